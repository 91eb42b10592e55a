// The OrbitDB side of bench/run.py. One role per process, chosen by the first argument; the
// second is a JSON object of parameters. The result is one JSON line on stdout (the `serve` role
// prints its address first, then runs until its standard input closes).
//
//   node bench.mjs write     '{"dir":..., "type":"documents"|"events", "payloads":FILE, "warmup":K,
//                              "gets":[keys], "queries":[n values], "budget":S}'
//   node bench.mjs reopen    '{"dir":..., "address":..., "key":...}'
//   node bench.mjs serve     '{"dir":..., "address":...}'
//   node bench.mjs replicate '{"dir":..., "peer":MULTIADDR, "address":..., "n":N, "timeout":S}'
//
// Storage is what OrbitDB 4 uses when given a durable Helia: entries are IPFS blocks in Helia's
// blockstore (blockstore-level, LevelDB on disk) and pinned (pins in Helia's datastore,
// datastore-level); heads and the entry index are OrbitDB's LevelStorage (LevelDB) under the
// OrbitDB directory. Helia's own default would be a memory blockstore and datastore.
// libp2p listens on 127.0.0.1 only: TCP, noise, yamux, identify, gossipsub; no bootstrap list,
// no HTTP routing or gateways, bitswap as the only block broker.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { bitswap } from '@helia/block-brokers'
import { libp2pRouting } from '@helia/routers'
import { createOrbitDB } from '@orbitdb/core'
import { LevelBlockstore } from 'blockstore-level'
import { LevelDatastore } from 'datastore-level'
import { createHelia } from 'helia'
import { createLibp2p } from 'libp2p'
import { multiaddr } from '@multiformats/multiaddr'

const loaded = performance.now()

async function startPeer (dir) {
  const datastore = new LevelDatastore(join(dir, 'ipfs', 'data'))
  await datastore.open()
  const blockstore = new LevelBlockstore(join(dir, 'ipfs', 'blocks'))
  await blockstore.open()
  const libp2p = await createLibp2p({
    datastore,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // libp2p refuses to dial loopback addresses unless told otherwise.
    connectionGater: { denyDialMultiaddr: () => false },
    services: {
      identify: identify(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true })
    }
  })
  const helia = await createHelia({
    libp2p,
    datastore,
    blockstore,
    blockBrokers: [bitswap()],
    routers: [libp2pRouting(libp2p)]
  })
  const orbitdb = await createOrbitDB({ ipfs: helia, directory: join(dir, 'orbitdb') })
  return {
    helia,
    orbitdb,
    async stop () {
      await orbitdb.stop()
      await helia.stop()
      await blockstore.close()
      await datastore.close()
    }
  }
}

function readPayloads (file) {
  return readFileSync(file, 'utf8').split('\n').filter(line => line).map(line => JSON.parse(line))
}

async function writeAll (db, type, payloads) {
  if (type === 'documents') {
    for (const doc of payloads) await db.put(doc)
  } else {
    for (const value of payloads) await db.add(value)
  }
}

// Latencies in microseconds of `fn(arg)` for each arg, until all ran or `budget` seconds passed
// (at least 3 samples).
async function latencies (args, fn, budget) {
  const samples = []
  const start = performance.now()
  for (const arg of args) {
    const t = performance.now()
    const found = await fn(arg)
    samples.push((performance.now() - t) * 1000)
    if (!found) throw new Error(`no result for ${JSON.stringify(arg)}`)
    if (samples.length >= 3 && performance.now() - start > budget * 1000) break
  }
  return samples
}

function openOptions (type) {
  return { type }
}

async function write (p) {
  const payloads = readPayloads(p.payloads)
  const peer = await startPeer(p.dir)
  try {
    if (p.warmup) {
      const warm = await peer.orbitdb.open('warmup', openOptions(p.type))
      await writeAll(warm, p.type, payloads.slice(0, p.warmup))
      await warm.close()
    }
    const db = await peer.orbitdb.open('bench', openOptions(p.type))
    const start = performance.now()
    await writeAll(db, p.type, payloads)
    const seconds = (performance.now() - start) / 1000
    const result = { seconds, ops: payloads.length, address: db.address }
    if (p.gets && p.gets.length) {
      result.get_us = await latencies(p.gets, key => db.get(key), p.budget ?? 5)
    }
    if (p.queries && p.queries.length) {
      // OrbitDB's documents store has no secondary index: a query is a predicate over every
      // document, newest first.
      result.query_us = await latencies(p.queries, async n => (await db.query(doc => doc.n === n)).length, p.budget ?? 5)
    }
    await db.close()
    result.peak_rss_mb = process.resourceUsage().maxRSS / 1024
    return result
  } finally {
    await peer.stop()
  }
}

async function reopen (p) {
  const start = performance.now()
  const peer = await startPeer(p.dir)
  try {
    const db = await peer.orbitdb.open(p.address, openOptions('documents'))
    const doc = await db.get(p.key)
    const seconds = (performance.now() - start) / 1000
    if (!doc) throw new Error(`no document ${p.key} after reopen`)
    const rss = process.memoryUsage().rss / 2 ** 20
    await db.close()
    return { seconds, rss_mb: rss, import_seconds: loaded / 1000 }
  } finally {
    await peer.stop()
  }
}

async function serve (p) {
  const peer = await startPeer(p.dir)
  const db = await peer.orbitdb.open(p.address)
  const addr = peer.helia.libp2p.getMultiaddrs().find(a => a.toString().includes('/tcp/'))
  process.stdout.write(JSON.stringify({ addr: addr.toString() }) + '\n')
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) { if (line === 'stop') break } // eslint-disable-line no-unused-vars
  await db.close()
  await peer.stop()
  return null
}

async function countEntries (db) {
  let n = 0
  for await (const entry of db.log.iterator()) { if (entry) n++ }
  return n
}

async function replicate (p) {
  const peer = await startPeer(p.dir)
  try {
    await peer.helia.libp2p.dial(multiaddr(p.peer))
    const start = performance.now()
    let done = null
    let failure = null
    let updates = 0
    let counting = Promise.resolve()
    const db = await peer.orbitdb.open(p.address)
    const check = () => {
      // Count once per update (the update of a head arrives after its whole history is joined);
      // the time is that of the update, not of the count.
      const at = performance.now()
      counting = counting.then(async () => {
        if (done !== null) return
        const n = await countEntries(db)
        if (n >= p.n) done = at
      }).catch(e => { failure = e })
    }
    db.events.on('update', () => { updates++; check() })
    db.events.on('error', e => { failure = e })
    check()
    const deadline = start + (p.timeout ?? 600) * 1000
    while (done === null && failure === null && performance.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    await counting
    if (failure) throw failure
    const result = done === null
      ? { timeout: true, seconds: (performance.now() - start) / 1000, held: await countEntries(db), updates }
      : { seconds: (done - start) / 1000, updates }
    await db.close()
    return result
  } finally {
    await peer.stop()
  }
}

const roles = { write, reopen, serve, replicate }
const [role, params] = process.argv.slice(2)
if (!roles[role]) {
  process.stderr.write(`usage: node bench.mjs ${Object.keys(roles).join('|')} JSON\n`)
  process.exit(2)
}
try {
  const result = await roles[role](JSON.parse(params || '{}'))
  if (result !== null) process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(0)
} catch (e) {
  process.stderr.write(`${e.stack || e}\n`)
  process.exit(1)
}
