// A Helia 7 node for tests/interop: it fetches blocks by CID over bitswap, or serves a CAR's blocks
// over bitswap.
//
//   node helia_peer.mjs fetch MULTIADDR CID [CID...] [--dag] [--timeout-ms N]
//       dials MULTIADDR (/ip4/127.0.0.1/tcp/N/p2p/<id>), gets each CID with
//       helia.blockstore.get (not in the local blockstore, so over bitswap from the connected peer),
//       checks it (Helia verifies the hash itself; this script hashes it again with sha2-256) and
//       prints one JSON line per block: {"cid", "codec", "size", "bytes": base64}. With --dag, every
//       dag-cbor block is decoded and each CID link found anywhere in it is fetched too (depth
//       first, each CID once); dag-pb blocks' links are followed too. With --file, the blocks are
//       not printed: the DAG is read as a UnixFS file (depth first: each node's data, then its
//       children's) and {"file_sha256": hex, "file_size": N} is printed before the last line.
//       Then {"done": true, "blocks": N, "ms": M}; on failure
//       {"error": "..."} and exit 1. --timeout-ms bounds the whole run (default 30000).
//
//   node helia_peer.mjs serve CARFILE [--dial MULTIADDR]
//       puts every block of CARFILE into Helia's blockstore, listens on 127.0.0.1, optionally
//       dials MULTIADDR, prints {"ready": true, "peer_id", "addrs", "roots", "blocks", "brokers"}
//       and serves over bitswap until stdin closes; then stops Helia and exits 0.
//
// Our own libp2p configuration: TCP on 127.0.0.1 only, Noise, yamux, identify, ping. No other
// transport, no bootstrap or other peer discovery, no DHT or delegated routing, no autonat, UPnP or
// relay. The only block broker is bitswap (createHeliaLight + withLibp2pLight + withBitswap, so
// neither @helia/http's trustless-gateway broker nor its delegated routers are added).
import { readFile } from 'node:fs/promises'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { CarReader } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { createHash } from 'node:crypto'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createHeliaLight } from 'helia'
import { equals } from 'multiformats/bytes'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const emit = (value) => process.stdout.write(JSON.stringify(value) + '\n')

function parseArgs (argv) {
  const positional = []
  const flags = { dag: false, file: false, timeoutMs: 30000, dial: null }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--dag') {
      flags.dag = true
    } else if (arg === '--file') {
      flags.dag = true
      flags.file = true
    } else if (arg === '--timeout-ms') {
      flags.timeoutMs = Number(argv[++i])
      if (!Number.isFinite(flags.timeoutMs) || flags.timeoutMs <= 0) {
        throw new Error(`--timeout-ms needs a positive number, not ${argv[i]}`)
      }
    } else if (arg === '--dial') {
      flags.dial = argv[++i]
      if (flags.dial == null) throw new Error('--dial needs a multiaddr')
    } else if (arg.startsWith('--')) {
      throw new Error(`unknown option ${arg}`)
    } else {
      positional.push(arg)
    }
  }
  return { positional, flags }
}

async function startHelia () {
  const helia = createHeliaLight({
    // dag-pb, raw and sha2-256 (and identity) are built in; gridnode's blocks are dag-cbor.
    codecs: [dagCbor],
    routers: [],
    blockBrokers: []
  })
  withLibp2pLight(helia, {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    services: {
      identify: identify(),
      ping: ping()
    }
  })
  // After the libp2p mixin: the bitswap broker is created from helia.libp2p when Helia starts.
  withBitswap(helia)
  await helia.start()
  const brokers = helia.blockBrokers.map((broker) => broker.name)
  if (brokers.length !== 1 || brokers[0] !== 'bitswap') {
    throw new Error(`expected only the bitswap block broker, found ${brokers.join(', ')}`)
  }
  return helia
}

async function concat (chunks) {
  const parts = []
  for await (const chunk of chunks) parts.push(chunk)
  return parts.length === 1 ? parts[0] : new Uint8Array(Buffer.concat(parts))
}

// Every CID anywhere in a decoded dag-cbor value, in the order they appear.
function linksOf (value, out = []) {
  const cid = CID.asCID(value)
  if (cid != null) {
    out.push(cid)
  } else if (Array.isArray(value)) {
    for (const item of value) linksOf(item, out)
  } else if (value != null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    for (const item of Object.values(value)) linksOf(item, out)
  }
  return out
}

// The bytes a UnixFS Data message holds (field 2), or none: the protobuf read by hand.
function unixfsData (data) {
  let pos = 0
  const varint = () => {
    let value = 0
    let shift = 0
    for (;;) {
      if (pos >= data.length) throw new Error('truncated UnixFS Data')
      const byte = data[pos++]
      value += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return value
      shift += 7
    }
  }
  let out = new Uint8Array()
  while (pos < data.length) {
    const key = varint()
    const field = Math.floor(key / 8)
    const wire = key % 8
    if (wire === 0) {
      varint()
    } else if (wire === 2) {
      const length = varint()
      if (field === 2) out = data.subarray(pos, pos + length)
      pos += length
    } else {
      throw new Error(`UnixFS Data: wire type ${wire}`)
    }
  }
  return out
}

async function fetchMode (positional, flags) {
  const [address, ...cids] = positional
  if (address == null || cids.length === 0) {
    throw new Error('usage: helia_peer.mjs fetch MULTIADDR CID [CID...] [--dag] [--timeout-ms N]')
  }
  const roots = cids.map((text) => CID.parse(text))
  const signal = AbortSignal.timeout(flags.timeoutMs)
  const started = Date.now()
  const helia = await startHelia()
  try {
    await helia.libp2p.dial(multiaddr(address), { signal })
    const seen = new Set()
    // Depth first: the stack holds CIDs still to fetch, the next one on top.
    const stack = [...roots].reverse()
    let count = 0
    const fileHash = createHash('sha256')
    let fileSize = 0
    while (stack.length > 0) {
      const cid = stack.pop()
      const key = cid.toString()
      if (seen.has(key) && !flags.file) continue
      seen.add(key)
      if (cid.multihash.code !== sha256.code) {
        throw new Error(`${key} is not a sha2-256 CID`)
      }
      const bytes = await concat(helia.blockstore.get(cid, { signal }))
      const digest = await sha256.digest(bytes)
      if (!equals(digest.bytes, cid.multihash.bytes)) {
        throw new Error(`block ${key} does not hash to its CID`)
      }
      count++
      if (flags.file) {
        // A UnixFS file: raw leaves are file bytes, a dag-pb node's Data field 2 (its own bytes)
        // comes before its children's. A block linked twice is read twice, as a file repeats it.
        if (cid.code === 0x55) {
          fileHash.update(bytes)
          fileSize += bytes.byteLength
        } else if (cid.code === dagPb.code) {
          const node = dagPb.decode(bytes)
          const own = unixfsData(node.Data ?? new Uint8Array())
          fileHash.update(own)
          fileSize += own.byteLength
          for (let i = node.Links.length - 1; i >= 0; i--) stack.push(node.Links[i].Hash)
        } else {
          throw new Error(`${key} is not a UnixFS file block`)
        }
        continue
      }
      emit({ cid: key, codec: cid.code, size: bytes.byteLength, bytes: Buffer.from(bytes).toString('base64') })
      if (flags.dag && cid.code === dagCbor.code) {
        const links = linksOf(dagCbor.decode(bytes))
        for (let i = links.length - 1; i >= 0; i--) {
          if (!seen.has(links[i].toString())) stack.push(links[i])
        }
      } else if (flags.dag && cid.code === dagPb.code) {
        const links = dagPb.decode(bytes).Links.map((link) => link.Hash)
        for (let i = links.length - 1; i >= 0; i--) {
          if (!seen.has(links[i].toString())) stack.push(links[i])
        }
      }
    }
    if (flags.file) emit({ file_sha256: fileHash.digest('hex'), file_size: fileSize })
    emit({ done: true, blocks: count, ms: Date.now() - started })
  } finally {
    await helia.stop()
  }
}

async function serveMode (positional, flags) {
  const [carFile] = positional
  if (carFile == null || positional.length !== 1) {
    throw new Error('usage: helia_peer.mjs serve CARFILE [--dial MULTIADDR]')
  }
  const reader = await CarReader.fromBytes(await readFile(carFile))
  const roots = await reader.getRoots()
  const helia = await startHelia()
  let count = 0
  for await (const { cid, bytes } of reader.blocks()) {
    await helia.blockstore.put(cid, bytes)
    count++
  }
  const ready = {
    ready: true,
    peer_id: helia.libp2p.peerId.toString(),
    addrs: helia.libp2p.getMultiaddrs().map((ma) => ma.toString()),
    roots: roots.map((cid) => cid.toString()),
    blocks: count,
    brokers: helia.blockBrokers.map((broker) => broker.name)
  }
  if (flags.dial != null) {
    const connection = await helia.libp2p.dial(multiaddr(flags.dial), {
      signal: AbortSignal.timeout(flags.timeoutMs)
    })
    ready.dialed = connection.remotePeer.toString()
  }
  emit(ready)
  await new Promise((resolve) => {
    process.stdin.on('end', resolve)
    process.stdin.on('close', resolve)
    process.stdin.resume()
  })
  await helia.stop()
}

const [mode, ...rest] = process.argv.slice(2)
try {
  const { positional, flags } = parseArgs(rest)
  if (mode === 'fetch') {
    await fetchMode(positional, flags)
  } else if (mode === 'serve') {
    await serveMode(positional, flags)
  } else {
    throw new Error(`unknown mode ${mode}: use fetch or serve`)
  }
  process.exit(0)
} catch (err) {
  emit({ error: String(err?.message ?? err) + (err?.errors != null ? ': ' + err.errors.map(String).join('; ') : '') })
  process.exit(1)
}
