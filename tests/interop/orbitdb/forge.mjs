// Forged OrbitDB entries, and what a real @orbitdb/core 4.0.0 does with each. One role per
// process, chosen by the first argument; the second is a JSON object of parameters; the result is
// one JSON line on stdout.
//
//   node forge.mjs judge '{"dir": DIR, "payload_bytes": N, "list_length": N}'
//
// `judge` writes a keyvalue database whose IPFS access controller lets one identity (WRITER)
// write, a few valid entries, then one forged head per kind (each on top of the valid head, each
// with its own payload), and hands every forgery, alone, to a fresh OrbitDB replica that already
// holds the valid log: the replica's Helia is given the blocks the forger would serve (the
// forgery's own blocks plus the database's), and the forged head goes through `log.joinEntry`,
// which is what OrbitDB's sync does with every head it receives (sync.js -> database.js
// applyOperation). The replica's Helia has no block broker, so a block the forger does not serve
// is missing at once instead of after OrbitDB's 30 s fetch timeout; the verdict is the same.
//
// The result: {address, blocks: {cid: base64} (the database's manifest, access controller,
// identities and valid entries), valid: [cids, oldest first], valid_all: the writer's all() of
// them, forgeries: [{name, what, head,
// blocks: {cid: base64}, orbitdb: {accepted, error, in_log, all_ok, value, entries, later_ok}}]}:
// later_ok says whether WRITER's next entry (valid, concurrent with the forgery) still joins. tests/hostile/
// test_orbitdb.py feeds the same blocks to gridnode's verification and writes nothing to disk
// beyond DIR.
//
// The forgeries are built with OrbitDB's own pieces (its KeyStore, Identities and Entry encoding)
// where they can be; the non-canonical block is written with cborg directly.

import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { rmSync } from 'node:fs'

import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { bitswap } from '@helia/block-brokers'
import { libp2pRouting } from '@helia/routers'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { createOrbitDB, Entry, Identities, KeyStore, IPFSAccessController } from '@orbitdb/core'
import { MemoryBlockstore } from 'blockstore-core'
import { createHelia } from 'helia'
import { createLibp2p } from 'libp2p'
import * as Block from 'multiformats/block'
import * as dagCbor from '@ipld/dag-cbor'
import { sha256 } from 'multiformats/hashes/sha2'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import * as cborg from 'cborg'
import { multiaddr } from '@multiformats/multiaddr'

const b64 = bytes => Buffer.from(bytes).toString('base64')

// A Helia with no network: no transports, no block broker; gossipsub is there because OrbitDB's
// Sync subscribes to the database's topic when a database opens.
async function offlineHelia () {
  const libp2p = await createLibp2p({
    addresses: { listen: [] },
    transports: [],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
  })
  return createHelia({ libp2p, blockstore: new MemoryBlockstore(), blockBrokers: [], routers: [] })
}

async function blockOf (value) {
  const { cid, bytes } = await Block.encode({ value, codec: dagCbor, hasher: sha256 })
  return { hash: cid.toString(base58btc), bytes }
}

// The dag-cbor block of a signed entry, as Entry.create and Entry.encode make it, but with any
// fields the forgery chooses: `signed` is what the signature covers, `extra` the rest.
async function entryBlock (signed, extra) {
  return blockOf({ ...signed, ...extra })
}

// What OrbitDB's key-store signMessage does: the key's signature of the bytes, in hex.
const signMessage = async (key, bytes) => Buffer.from(await key.sign(bytes)).toString('hex')

async function signedBytes (signed) {
  const { bytes } = await Block.encode({ value: signed, codec: dagCbor, hasher: sha256 })
  return bytes
}

// The database and its forgeries, built offline: {address, writer, base: {hash: bytes}, valid,
// validAll, head, forgeries: [{name, what, head, blocks: {hash: bytes}}]}.
async function forge (p) {
  const payloadBytes = p.payload_bytes ?? (1 << 20) + 1
  const listLength = p.list_length ?? 5000
  rmSync(p.dir, { recursive: true, force: true })

  // The writer's side: an OrbitDB with its own keystore; identities WRITER (allowed) and MALLORY
  // (a stranger with a perfectly valid identity of its own).
  const helia = await offlineHelia()
  const keystore = await KeyStore({ path: join(p.dir, 'writer', 'keystore') })
  const identities = await Identities({ keystore, ipfs: helia })
  const writer = await identities.createIdentity({ id: 'writer' })
  const mallory = await identities.createIdentity({ id: 'mallory' })
  const orbitdb = await createOrbitDB({ ipfs: helia, identities, identity: writer, directory: join(p.dir, 'writer', 'orbitdb') })
  const db = await orbitdb.open('forgeries', {
    type: 'keyvalue',
    AccessController: IPFSAccessController({ write: [writer.id] }),
    syncAutomatically: false
  })
  const address = db.address
  const logId = address
  for (let i = 0; i < 3; i++) await db.put(`k${i}`, `valid ${i}`)
  const valid = (await db.log.values()).map(e => e.hash)
  const head = valid[valid.length - 1]
  const validAll = await db.all()
  const headEntry = await db.log.get(head)

  // Every block the valid database is made of: manifest, access controller, writer identity,
  // entries. (MALLORY's identity block is served only by the forgeries that name it.)
  const base = {}
  const addr = address.replace('/orbitdb/', '')
  const want = [addr, writer.hash, ...valid]
  const manifestValue = (await Block.decode({ bytes: await collect(helia.blockstore.get(CID.parse(addr, base58btc))), codec: dagCbor, hasher: sha256 })).value
  want.push(manifestValue.accessController.replace('/ipfs/', ''))
  for (const hash of want) base[hash] = await collect(helia.blockstore.get(CID.parse(hash, base58btc)))

  const writerKey = await keystore.getKey(writer.id)
  const malloryKey = await keystore.getKey(mallory.id)
  const nextTime = headEntry.clock.time + 1

  // A forged entry: the fields OrbitDB signs, then key/identity/sig; `sign` picks the signing key
  // and may be replaced to produce a bad signature.
  const make = async ({ payload, id = logId, next = [head], refs = [], clock, v = 2, key = writer.publicKey, identity = writer.hash, signer = writerKey, corrupt = false, shape = null }) => {
    const signed = { id, payload, next, refs, clock: clock ?? { id: key, time: nextTime }, v }
    let sig = await signMessage(signer, await signedBytes(signed))
    if (corrupt) sig = sig.slice(0, 20) + (sig[20] === '0' ? '1' : '0') + sig.slice(21)
    const full = { ...signed, key, identity, sig }
    if (shape) return shape(full)
    return entryBlock(signed, { key, identity, sig })
  }
  const put = (i, value) => ({ op: 'PUT', key: `forged-${i}`, value })

  // An identity block that claims WRITER's id with MALLORY's key: signatures that do not verify.
  const badIdentity = await blockOf({
    id: writer.id,
    publicKey: mallory.publicKey,
    signatures: { id: mallory.signatures.id, publicKey: writer.signatures.publicKey },
    type: 'publickey'
  })
  // An identity nobody serves: a well-formed block kept back from the replica.
  const ghost = await blockOf({ id: 'ghost', publicKey: mallory.publicKey, signatures: mallory.signatures, type: 'publickey' })

  const forgeries = [
    { name: 'valid', what: 'control: a valid entry by the writer', build: i => make({ payload: put(i, 'fine') }) },
    { name: 'bad-signature', what: 'the writer\'s entry with one hex digit of `sig` changed', build: i => make({ payload: put(i, 'x'), corrupt: true }) },
    {
      name: 'key-identity-mismatch',
      what: 'signed by MALLORY\'s key (`key` = MALLORY\'s public key) but naming WRITER\'s identity',
      build: i => make({ payload: put(i, 'x'), key: mallory.publicKey, signer: malloryKey })
    },
    {
      name: 'unknown-identity',
      what: '`identity` is the CID of an identity block nobody serves',
      build: i => make({ payload: put(i, 'x'), identity: ghost.hash })
    },
    {
      name: 'identity-bad-signatures',
      what: 'an identity block claiming WRITER\'s id with MALLORY\'s public key; its signatures do not verify',
      blocks: [badIdentity],
      build: i => make({ payload: put(i, 'x'), key: mallory.publicKey, signer: malloryKey, identity: badIdentity.hash })
    },
    {
      name: 'not-in-access-list',
      what: 'MALLORY\'s own valid identity and key: MALLORY is not in the write list',
      blocks: [{ hash: mallory.hash, bytes: mallory.bytes }],
      build: i => make({ payload: put(i, 'x'), key: mallory.publicKey, signer: malloryKey, identity: mallory.hash })
    },
    { name: 'wrong-id', what: '`id` names another database', build: i => make({ payload: put(i, 'x'), id: '/orbitdb/zdpuAnotherDatabaseXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' }) },
    { name: 'clock-huge', what: 'clock time 2^60 (a CBOR integer), beyond JavaScript\'s safe integers (2^53)', build: i => make({ payload: put(i, 'x'), clock: { id: writer.publicKey, time: 2n ** 60n } }) },
    { name: 'clock-negative', what: 'clock time -5', build: i => make({ payload: put(i, 'x'), clock: { id: writer.publicKey, time: -5 } }) },
    { name: 'clock-not-integer', what: 'clock time 1.5', build: i => make({ payload: put(i, 'x'), clock: { id: writer.publicKey, time: 1.5 } }) },
    { name: 'clock-id-not-key', what: 'clock id is MALLORY\'s public key, not the signing key', build: i => make({ payload: put(i, 'x'), clock: { id: mallory.publicKey, time: nextTime } }) },
    { name: 'version-not-2', what: '`v` is 1', build: i => make({ payload: put(i, 'x'), v: 1 }) },
    { name: 'huge-next', what: `\`next\` lists the valid head ${listLength} times`, build: i => make({ payload: put(i, 'x'), next: Array(listLength).fill(head) }) },
    { name: 'huge-refs', what: `\`refs\` lists valid entries ${listLength} times`, build: i => make({ payload: put(i, 'x'), refs: Array.from({ length: listLength }, (_, j) => valid[j % valid.length]) }) },
    { name: 'next-not-cid', what: '`next` holds a string that is not a CID', build: i => make({ payload: put(i, 'x'), next: [head, 'not-a-cid'] }) },
    { name: 'oversized-payload', what: `a payload of ${payloadBytes} bytes`, build: i => make({ payload: put(i, 'x'.repeat(payloadBytes)) }) },
    {
      name: 'non-canonical-cbor',
      what: 'a correctly signed entry whose block lists its map keys in reverse order (not canonical dag-cbor)',
      build: i => make({
        payload: put(i, 'x'),
        shape: async full => {
          const reversed = Object.fromEntries(Object.entries(full).reverse())
          // cborg with no key sorting keeps the order given: bytes a dag-cbor encoder never makes.
          const bytes = cborg.encode(reversed, { mapSorter: () => 0 })
          const digest = await sha256.digest(bytes)
          return { hash: CID.createV1(dagCbor.code, digest).toString(base58btc), bytes }
        }
      })
    }
  ]

  const built = []
  let i = 0
  for (const f of forgeries) {
    i++
    const blk = await f.build(i)
    const blocks = {}
    blocks[blk.hash] = blk.bytes
    for (const b of f.blocks ?? []) blocks[b.hash] = b.bytes
    built.push({ name: f.name, what: f.what, head: blk.hash, bytes: blk.bytes, blocks })
  }
  // WRITER's next write, made without having seen any forgery: what a replica receives after a
  // forgery, concurrent with it.
  const later = await make({ payload: { op: 'PUT', key: 'later', value: 'after the forgery' } })
  await db.close()
  await orbitdb.stop()
  await helia.stop()
  return { address, writer: writer.id, base, valid, validAll, head, later, forgeries: built }
}

const shown = blocks => Object.fromEntries(Object.entries(blocks).map(([h, b]) => [h, b64(b)]))

async function judge (p) {
  const f = await forge(p)
  const results = []
  let i = 0
  for (const forgery of f.forgeries) {
    i++
    const verdict = await replicaVerdict(p.dir, i, f, forgery)
    results.push({ name: forgery.name, what: forgery.what, head: forgery.head, blocks: shown(forgery.blocks), orbitdb: verdict })
  }
  return { address: f.address, writer: f.writer, blocks: shown(f.base), valid: f.valid, valid_all: f.validAll, forgeries: results }
}

async function collect (got) {
  // Helia's blockstore.get is a promise of bytes in some versions, an async iterable of chunks in
  // others.
  const value = await got
  if (value instanceof Uint8Array) return value
  const chunks = []
  for await (const c of got) chunks.push(c)
  return Buffer.concat(chunks)
}

// A fresh replica that holds the valid log; the forged head is joined as sync.js would join it.
// The verdict: {accepted, error, in_log, all_ok, value, entries} on the forgery, then
// {later_ok, later_error}: whether WRITER's next (valid, concurrent) entry still joins and all()
// still answers with it, i.e. whether the replica still works after the forgery.
async function replicaVerdict (dir, i, f, forged) {
  const { address, base, head: validHead, later } = f
  const blocks = forged.blocks
  const helia = await offlineHelia()
  for (const [hash, bytes] of [...Object.entries(base), ...Object.entries(blocks), [later.hash, later.bytes]]) {
    await helia.blockstore.put(CID.parse(hash, base58btc), bytes)
  }
  const orbitdb = await createOrbitDB({ ipfs: helia, id: `replica${i}`, directory: join(dir, `replica${i}`) })
  const verdict = { accepted: false, error: null, in_log: false, all_ok: true, value: null }
  try {
    const db = await orbitdb.open(address, { syncAutomatically: false })
    // The valid history first, as a replica that has followed the database holds it.
    await db.log.joinEntry(await Entry.decode(base[validHead]))
    let entry
    try {
      entry = await Entry.decode(forged.bytes)
    } catch (e) {
      verdict.error = `decode: ${e.message}`
    }
    if (entry) {
      try {
        verdict.accepted = await withTimeout(db.log.joinEntry(entry), 20000)
      } catch (e) {
        verdict.error = String(e.message).split('\n').join(' ')
      }
      verdict.in_log = await db.log.has(entry.hash)
    }
    try {
      const all = await withTimeout(db.all(), 20000)
      const forgedKey = `forged-${i}`
      const hit = all.find(r => r.key === forgedKey)
      verdict.value = hit ? (typeof hit.value === 'string' && hit.value.length > 40 ? `${hit.value.length} chars` : hit.value) : null
      verdict.entries = all.length
    } catch (e) {
      verdict.all_ok = false
      verdict.all_error = String(e.message)
    }
    try {
      const joined = await withTimeout(db.log.joinEntry(await Entry.decode(later.bytes)), 20000)
      const all = await withTimeout(db.all(), 20000)
      verdict.later_ok = joined && all.some(r => r.key === 'later')
    } catch (e) {
      verdict.later_ok = false
      verdict.later_error = String(e.message).split('\n').join(' ')
    }
    await db.close()
  } finally {
    await orbitdb.stop()
    await helia.stop()
  }
  return verdict
}

function withTimeout (promise, ms) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms) })
  ]).finally(() => clearTimeout(timer))
}

// A hostile OrbitDB peer: on 127.0.0.1 (TCP, noise, yamux, identify, gossipsub, bitswap) with
// every block of the database and of the forgeries in its blockstore, speaking OrbitDB's sync:
// the heads protocol `/orbitdb/heads<address>` (answered, and dialled when a peer subscribes to
// the topic) and the gossipsub topic named by the address (heads published every 300 ms). `mode`:
//   forgeries  on streams and gossip: the valid head then every forged head but the 1 MiB one,
//              each raw, no length prefix, as sync.js writes them; then it closes;
//   endless    the first heads stream honest (the valid head, then close), every later one: the
//              valid head, then random bytes, 16 KiB at a time, for as long as the reader reads;
//              on gossip: the valid head;
//   oversized  the first heads stream honest, every later one: the valid head, the forged entry
//              of a 1 MiB payload, then one "head" of 4 MiB (a CBOR byte string), then it
//              closes; on gossip: the valid head;
//   reset      the first heads stream honest, every later one: half of the valid head, then
//              the stream reset (as when a peer's process dies mid-stream); on gossip: the
//              valid head.
// Prints {addr, address, valid, valid_all, forgeries: [{name, head}]}, serves until a line `stop`
// (or the end) on stdin, then prints {streams, dialled, published, sent_bytes, cut}: cut counts
// the heads streams whose writing failed (the reader reset them).
async function serve (p) {
  const f = await forge(p)
  const mode = p.mode ?? 'forgeries'
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
  })
  const helia = await createHelia({ libp2p, blockstore: new MemoryBlockstore(), blockBrokers: [bitswap()], routers: [libp2pRouting(libp2p)] })
  const all = { ...f.base }
  for (const forgery of f.forgeries) Object.assign(all, forgery.blocks)
  for (const [hash, bytes] of Object.entries(all)) await helia.blockstore.put(CID.parse(hash, base58btc), bytes)

  const oversized = f.forgeries.find(x => x.name === 'oversized-payload')
  const forged = f.forgeries.filter(x => x !== oversized).map(x => x.bytes)
  const heads = mode === 'forgeries' ? [f.base[f.head], ...forged] : [f.base[f.head]]
  const stats = { streams: 0, dialled: 0, published: 0, sent_bytes: 0, cut: 0 }
  const send = async (stream, bytes) => {
    if (!stream.send(bytes)) await stream.onDrain()
    stats.sent_bytes += bytes.length
  }
  let exchanges = 0
  const exchange = async stream => {
    const honest = exchanges++ === 0
    // Read what the other side writes (its heads), bounded; we judge nothing.
    void (async () => {
      let got = 0
      for await (const chunk of stream) { got += chunk.byteLength; if (got > (1 << 22)) break }
    })().catch(() => {})
    try {
      if (mode === 'reset' && !honest) {
        await send(stream, heads[0].subarray(0, heads[0].length >> 1))
        await new Promise(resolve => setTimeout(resolve, 50))
        stream.abort(new Error('forger: reset'))
        return
      }
      for (const bytes of heads) await send(stream, bytes)
      if (mode === 'endless' && !honest) {
        for (;;) {
          await send(stream, crypto.getRandomValues(new Uint8Array(16384)))
          await new Promise(resolve => setImmediate(resolve)) // let the rest of the peer run
        }
      }
      if (mode === 'oversized' && !honest) {
        await send(stream, oversized.bytes)
        const huge = new Uint8Array(5 + (4 << 20))
        huge.set([0x5a, 0x00, 0x40, 0x00, 0x00]) // a CBOR byte string of 4 MiB
        await send(stream, huge)
      }
      await stream.close()
    } catch (e) {
      stats.cut++ // the reader reset the stream (or the connection died)
      stream.abort?.(e)
    }
  }
  const protocol = `/orbitdb/heads${f.address}`
  await libp2p.handle(protocol, stream => { stats.streams++; exchange(stream) })
  const pubsub = libp2p.services.pubsub
  pubsub.addEventListener('subscription-change', async event => {
    const { peerId, subscriptions } = event.detail
    if (!subscriptions.find(s => s.topic === f.address && s.subscribe)) return
    try {
      const stream = await libp2p.dialProtocol(peerId, protocol)
      stats.dialled++
      await exchange(stream)
    } catch (e) {}
  })
  pubsub.subscribe(f.address)
  const gossip = setInterval(() => {
    for (const bytes of heads) {
      pubsub.publish(f.address, bytes).then(() => { stats.published++ }, () => {})
    }
  }, 300)

  const addr = libp2p.getMultiaddrs().find(a => a.toString().includes('/tcp/'))
  process.stdout.write(JSON.stringify({
    addr: addr.toString(),
    address: f.address,
    valid: f.valid,
    valid_all: f.validAll,
    forgeries: f.forgeries.map(x => ({ name: x.name, head: x.head }))
  }) + '\n')
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) { if (line === 'stop') break }
  clearInterval(gossip)
  await helia.stop()
  return stats
}

// A fresh OrbitDB replica over the network: dials `peer` (a `serve` forger), opens `address`,
// and after `seconds` prints what it holds: {keys: all()'s keys, entries: its log's length}.
// This is the network path of `judge`: heads by the heads protocol and gossip, entries and
// identities by bitswap.
async function victim (p) {
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
  })
  const helia = await createHelia({ libp2p, blockstore: new MemoryBlockstore(), blockBrokers: [bitswap()], routers: [libp2pRouting(libp2p)] })
  const orbitdb = await createOrbitDB({ ipfs: helia, id: 'victim', directory: join(p.dir, 'victim') })
  const errors = []
  try {
    await libp2p.dial(multiaddr(p.peer))
    const db = await orbitdb.open(p.address)
    db.events.on('error', e => errors.push(String(e.message).slice(0, 200)))
    await new Promise(resolve => setTimeout(resolve, (p.seconds ?? 10) * 1000))
    const all = await db.all()
    let entries = 0
    for await (const e of db.log.iterator()) { if (e) entries++ }
    await db.close()
    return { keys: all.map(r => r.key), entries, errors: errors.slice(0, 20) }
  } finally {
    await orbitdb.stop()
    await helia.stop()
  }
}

const roles = { judge, serve, victim }
const [role, params] = process.argv.slice(2)
if (!roles[role]) {
  process.stderr.write(`usage: node forge.mjs ${Object.keys(roles).join('|')} JSON\n`)
  process.exit(2)
}
try {
  const result = await roles[role](JSON.parse(params || '{}'))
  // Exit once the (large) line is flushed: a pipe takes it in pieces.
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0))
} catch (e) {
  process.stderr.write(`${e.stack || e}\n`)
  process.exit(1)
}
