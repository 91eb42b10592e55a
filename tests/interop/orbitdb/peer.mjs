// A real @orbitdb/core 4.0.0 peer (Helia 6, Node 22) for tests/interop/test_orbitdb.py.
//
//   node peer.mjs write DIR [--documents N] [--events N] [--keyvalue N] [--dial MULTIADDR]
//       opens a documents, an events and a keyvalue database (each only if its N > 0) in a fresh
//       OrbitDB under DIR, writes N documents ({_id: 'doc-<i>', n: i, ...}, every seventh one
//       overwritten and every eleventh deleted), N events ({n: i}) and N keys, then prints
//       {"ready": true, "peer_id", "addrs", "databases": {"documents": ADDRESS, ...}} and
//       {"answers": ...} (below). Then it reads commands from stdin, one JSON line each:
//         {"cmd": "write", "documents": N, "events": N, "keyvalue": N}  writes N more of each
//         {"cmd": "answers"}                                             prints the answers again
//         {"cmd": "dial", "addr": MULTIADDR}                             dials a peer
//       and answers each with {"answers": ...}, {"dialled": ...}. Stdin closed: stops, exits 0.
//
//   node peer.mjs replicate DIR --dial MULTIADDR --db ADDRESS=N [--db ADDRESS=N ...]
//                 [--timeout-ms MS]
//       a fresh OrbitDB that dials MULTIADDR only, opens each ADDRESS (the manifest, the access
//       controller, the identities and the log all come from the peers it knows: that one), waits
//       until each has N entries in all(), prints {"answers": ...} and exits 0; on timeout prints
//       {"error": ..., "answers": ...} and exits 1.
//
// Answers: {"<address>": {"type", "all": db.all() as JS returns it, "query": for documents,
// db.query(doc => doc.n % 3 === 0)}}. Every line on stdout is one JSON value; logs go to stderr.
//
// Our own libp2p configuration: TCP on 127.0.0.1, Noise, yamux, identify, gossipsub with strict
// signing (gridnode requires signed messages), no discovery, no DHT, no delegated routing; the
// only block broker is bitswap.
import { mkdir } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bitswap } from '@helia/block-brokers'
import { gossipsub, StrictSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createOrbitDB } from '@orbitdb/core'
import { MemoryBlockstore } from 'blockstore-core'
import { createHelia } from 'helia'
import { createLibp2p } from 'libp2p'

// Resolves once the line is handed to the OS: an answer of a few MiB is written whole before
// process.exit (a pipe's writes are asynchronous in Node).
const emit = (value) =>
  new Promise((resolve) => process.stdout.write(JSON.stringify(value) + '\n', resolve))

function parseArgs (argv) {
  const positional = []
  const flags = { documents: 0, events: 0, keyvalue: 0, dial: [], db: [], timeoutMs: 60000 }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const next = () => {
      const value = argv[++i]
      if (value == null) throw new Error(`${arg} needs a value`)
      return value
    }
    if (arg === '--documents' || arg === '--events' || arg === '--keyvalue') {
      flags[arg.slice(2)] = Number(next())
    } else if (arg === '--dial') {
      flags.dial.push(next())
    } else if (arg === '--db') {
      const [address, count] = next().split('=')
      flags.db.push({ address, count: Number(count) })
    } else if (arg === '--timeout-ms') {
      flags.timeoutMs = Number(next())
    } else if (arg.startsWith('--')) {
      throw new Error(`unknown option ${arg}`)
    } else {
      positional.push(arg)
    }
  }
  return { positional, flags }
}

async function start (directory) {
  await mkdir(directory, { recursive: true })
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({
        globalSignaturePolicy: StrictSign,
        allowPublishToZeroTopicPeers: true,
        emitSelf: false
      })
    }
  })
  const ipfs = await createHelia({
    libp2p,
    blockstore: new MemoryBlockstore(),
    blockBrokers: [bitswap()],
    routers: []
  })
  const orbitdb = await createOrbitDB({ ipfs, directory })
  return { libp2p, ipfs, orbitdb }
}

async function answers (databases) {
  const out = {}
  for (const db of databases) {
    const entry = { type: db.type, all: await db.all() }
    if (db.type === 'documents') {
      entry.query = await db.query((doc) => doc.n % 3 === 0)
    }
    out[db.address] = entry
  }
  return out
}

const counters = { documents: 0, events: 0, keyvalue: 0 }

async function writeSome (dbs, counts) {
  for (let i = 0; i < (counts.documents ?? 0); i++) {
    const n = counters.documents++
    await dbs.documents.put({ _id: `doc-${n}`, n, text: `document ${n}` })
    if (n % 7 === 0) await dbs.documents.put({ _id: `doc-${n}`, n, text: `document ${n}, again` })
    if (n % 11 === 5) await dbs.documents.del(`doc-${n}`)
  }
  for (let i = 0; i < (counts.events ?? 0); i++) {
    const n = counters.events++
    await dbs.events.add({ n, text: `event ${n}` })
  }
  for (let i = 0; i < (counts.keyvalue ?? 0); i++) {
    const n = counters.keyvalue++
    await dbs.keyvalue.put(`key-${n % 50}`, { n })
    if (n % 13 === 3) await dbs.keyvalue.del(`key-${(n + 1) % 50}`)
  }
}

async function write (directory, flags) {
  const { libp2p, ipfs, orbitdb } = await start(directory)
  const dbs = {}
  for (const type of ['documents', 'events', 'keyvalue']) {
    if (flags[type] > 0) dbs[type] = await orbitdb.open(`gridnode-interop-${type}`, { type })
  }
  for (const addr of flags.dial) await libp2p.dial(multiaddr(addr))
  await writeSome(dbs, flags)
  await emit({
    ready: true,
    peer_id: libp2p.peerId.toString(),
    addrs: libp2p.getMultiaddrs().map(String),
    databases: Object.fromEntries(Object.entries(dbs).map(([t, db]) => [t, db.address]))
  })
  await emit({ answers: await answers(Object.values(dbs)) })
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (!line.trim()) continue
    try {
      const command = JSON.parse(line)
      if (command.cmd === 'write') {
        await writeSome(dbs, command)
        await emit({ answers: await answers(Object.values(dbs)) })
      } else if (command.cmd === 'answers') {
        await emit({ answers: await answers(Object.values(dbs)) })
      } else if (command.cmd === 'dial') {
        const connection = await libp2p.dial(multiaddr(command.addr))
        await emit({ dialled: connection.remotePeer.toString() })
      } else {
        await emit({ error: `unknown command ${command.cmd}` })
      }
    } catch (error) {
      await emit({ error: String(error?.stack ?? error) })
    }
  }
  await orbitdb.stop()
  await ipfs.stop()
  process.exit(0)
}

async function replicate (directory, flags) {
  const { libp2p, ipfs, orbitdb } = await start(directory)
  const deadline = Date.now() + flags.timeoutMs
  for (const addr of flags.dial) await libp2p.dial(multiaddr(addr))
  const dbs = []
  for (const { address } of flags.db) {
    dbs.push(await orbitdb.open(address))
  }
  const counted = async () => {
    for (let i = 0; i < dbs.length; i++) {
      if ((await dbs[i].all()).length < flags.db[i].count) return false
    }
    return true
  }
  let ok = false
  while (Date.now() < deadline) {
    if (await counted()) {
      ok = true
      break
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  const result = await answers(dbs)
  if (ok) {
    await emit({ answers: result })
  } else {
    await emit({ error: 'timed out', answers: result })
  }
  await orbitdb.stop()
  await ipfs.stop()
  process.exit(ok ? 0 : 1)
}

const { positional, flags } = parseArgs(process.argv.slice(2))
const [role, directory] = positional
try {
  if (role === 'write') {
    await write(directory, flags)
  } else if (role === 'replicate') {
    await replicate(directory, flags)
  } else {
    throw new Error(`unknown role ${role}`)
  }
} catch (error) {
  await emit({ error: String(error?.stack ?? error) })
  process.exit(1)
}
