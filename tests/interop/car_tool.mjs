// @ipld/car against gridnode's CARs, for tests/interop/test_js_interop.py.
//
//   node car_tool.mjs read FILE        one JSON object: version, roots, blocks [[cid, base64]]
//   node car_tool.mjs rewrite IN OUT   reads IN with CarReader; decodes each block with
//                                      @ipld/dag-cbor, encodes it again, hashes it with sha2-256
//                                      into a CIDv1 of its own, and writes the roots and blocks to
//                                      OUT with CarWriter (fails if a CID comes out different)
import { createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CarReader, CarWriter } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const [command, input, output] = process.argv.slice(2)
const reader = await CarReader.fromBytes(await readFile(input))
const roots = await reader.getRoots()

if (command === 'read') {
  const blocks = []
  for await (const { cid, bytes } of reader.blocks()) {
    blocks.push([cid.toString(), Buffer.from(bytes).toString('base64')])
  }
  process.stdout.write(JSON.stringify({
    version: reader.version,
    roots: roots.map((cid) => cid.toString()),
    blocks
  }))
} else if (command === 'rewrite') {
  const { writer, out } = CarWriter.create(roots)
  const done = pipeline(Readable.from(out), createWriteStream(output))
  for await (const { cid, bytes } of reader.blocks()) {
    const encoded = dagCbor.encode(dagCbor.decode(bytes))
    const own = CID.createV1(dagCbor.code, await sha256.digest(encoded))
    if (!own.equals(cid)) throw new Error(`re-encoding ${cid} gave ${own}`)
    await writer.put({ cid: own, bytes: encoded })
  }
  await writer.close()
  await done
} else {
  throw new Error(`unknown command ${command}`)
}
