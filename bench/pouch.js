// pouch.js: the CouchDB-style peer of the fieldsync benchmark. Loads the same
// records into a local PouchDB (LevelDB, on disk; not timed), then times one
// replication to a pouchdb-server over loopback with PouchDB's default settings.
// bench/bench.py starts the server and runs this; never a test.
//
//   node pouch.js JSONL COUNT LOCAL_DIR REMOTE_DB_URL
// prints {"docs":N,"seconds":S,"docs_written":W} on stdout.
'use strict';

const fs = require('fs');
const path = require('path');
const PouchDB = require('pouchdb');

async function main() {
  const [file, count, dir, url] = process.argv.slice(2);
  if (!file || !count || !dir || !url) {
    process.stderr.write('usage: node pouch.js JSONL COUNT LOCAL_DIR REMOTE_DB_URL\n');
    process.exit(64);
  }
  const n = parseInt(count, 10);
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  if (lines.length < n) throw new Error(`${file} holds ${lines.length} records, not ${n}`);
  fs.mkdirSync(dir, { recursive: true });
  const local = new PouchDB(path.join(dir, 'local'));
  // Load (not timed): sortable ids, as fieldsync's UUIDv7, in bulks of 1,000.
  for (let i = 0; i < n; i += 1000) {
    const docs = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) {
      const doc = JSON.parse(lines[j]);
      doc._id = 'r' + String(j).padStart(9, '0');
      docs.push(doc);
    }
    const res = await local.bulkDocs(docs);
    for (const r of res) if (r.error) throw new Error(`load: ${r.message}`);
  }
  const remote = new PouchDB(url);
  const t0 = process.hrtime.bigint();
  const info = await PouchDB.replicate(local, remote); // default settings
  const t1 = process.hrtime.bigint();
  if (info.ok !== true || info.docs_written !== n) {
    throw new Error(`replication wrote ${info.docs_written} of ${n} (${info.status})`);
  }
  await local.close();
  process.stdout.write(JSON.stringify({
    docs: n,
    seconds: Number(t1 - t0) / 1e9,
    docs_written: info.docs_written,
  }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`pouch.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
