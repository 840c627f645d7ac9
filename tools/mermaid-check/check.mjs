// Parses every `.mmd` file in the directories or files given with the
// `mermaid` package's own parser (under jsdom, which Mermaid needs for its
// DOM globals). Prints one line per diagram and exits 1 if any fails.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!DOCTYPE html><body></body>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

const files = [];
for (const arg of process.argv.slice(2)) {
  if (statSync(arg).isDirectory()) {
    for (const name of readdirSync(arg).sort()) {
      if (name.endsWith('.mmd')) files.push(join(arg, name));
    }
  } else {
    files.push(arg);
  }
}
if (files.length === 0) {
  console.error('no .mmd files given');
  process.exit(2);
}
let failed = 0;
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  try {
    const result = await mermaid.parse(text);
    console.log(`ok ${file} (${result.diagramType})`);
  } catch (e) {
    failed += 1;
    console.log(`FAILED ${file}: ${String(e.message || e)}`);
  }
}
console.log(`${files.length - failed} of ${files.length} diagrams parsed`);
process.exit(failed ? 1 : 0);
