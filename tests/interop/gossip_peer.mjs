// A js-libp2p peer for tests/interop/test_js_interop.py: it dials a gridnode, pings it, listens on
// a database's gossip topic (printing each head announcement, decoded) and on a plain text topic
// (printing what gridnode sent), and keeps publishing its own text there.
//
//   node gossip_peer.mjs GRIDNODE_MULTIADDR DB_TOPIC TEXT_TOPIC TEXT SECONDS
//
// Every event is one JSON line on stdout. Exits 0 after SECONDS, or when stdin closes.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import * as dagCbor from '@ipld/dag-cbor'
import { gossipsub, StrictSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'

const [address, dbTopic, textTopic, text, seconds] = process.argv.slice(2)
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    // gridnode signs every message and requires signatures (py-libp2p strict_signing), and uses
    // the default message id (origin peer id + seqno): the same as js-libp2p's StrictSign.
    pubsub: gossipsub({
      globalSignaturePolicy: StrictSign,
      allowPublishToZeroTopicPeers: true,
      emitSelf: false
    })
  }
})
emit({ event: 'started', peer: node.peerId.toString() })

const pubsub = node.services.pubsub
pubsub.addEventListener('message', ({ detail: message }) => {
  const from = message.type === 'signed' ? message.from.toString() : null
  if (message.topic === dbTopic) {
    const value = dagCbor.decode(message.data)
    const link = (v) => (CID.asCID(v) ?? null)?.toString() ?? null
    emit({
      event: 'announcement',
      from,
      t: value.t,
      db: link(value.db),
      heads: (value.heads ?? []).map(link),
      blocks: (value.blocks ?? []).length
    })
  } else if (message.topic === textTopic) {
    emit({ event: 'text', from, text: new TextDecoder().decode(message.data) })
  }
})
pubsub.subscribe(dbTopic)
pubsub.subscribe(textTopic)

const target = multiaddr(address)
const connection = await node.dial(target)
emit({ event: 'connected', peer: connection.remotePeer.toString(), muxer: connection.multiplexer })
const rtt = await node.services.ping.ping(target)
emit({ event: 'ping', rtt })
const identified = await node.peerStore.get(connection.remotePeer)
emit({ event: 'identify', protocols: identified.protocols })

const payload = new TextEncoder().encode(text)
const timer = setInterval(() => {
  pubsub.publish(textTopic, payload).then(
    (result) => emit({ event: 'published', recipients: result.recipients.length }),
    (error) => emit({ event: 'publish-error', error: String(error) })
  )
}, 250)

const stop = async () => {
  clearInterval(timer)
  await node.stop()
  process.exit(0)
}
setTimeout(stop, Number(seconds) * 1000)
process.stdin.on('end', stop)
process.stdin.resume()
