// Builds static/vendor/plotly/plotly.min.js from entry.js with the versions pinned in
// package-lock.json, and records what it built in bundle.json (the version, the trace types
// and the bundle's SHA-256), which tests/unit/test_plotly_bundle.py checks against the file.
// Run from the repository root with `make plotly` (npm ci, then node build.mjs).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outfile = join(root, 'static', 'vendor', 'plotly', 'plotly.min.js');
// Trace types entry.js registers ("scatter" is in the core).
const TRACES = ['scatter', 'bar', 'scattergl', 'waterfall'];

const plotlyVersion = JSON.parse(
    readFileSync(join(here, 'node_modules', 'plotly.js', 'package.json'), 'utf8')).version;

await build({
    entryPoints: [join(here, 'entry.js')],
    outfile,
    bundle: true,
    minify: true,
    format: 'iife',
    globalName: 'Plotly',
    target: 'es2016',
    legalComments: 'none',
    banner: { js: `/* plotly.js v${plotlyVersion} (MIT), traces: ${TRACES.join(', ')}; built by scripts/plotly */` },
    // As plotly.js's own esbuild-config.js; the map traces' stylesheet is not needed.
    alias: { regl: '@plotly/regl' },
    define: { global: 'window', 'define.amd': 'false', 'process.env.NODE_DEBUG': 'false' },
    loader: { '.css': 'empty' },
    logLevel: 'warning',
});

const bytes = readFileSync(outfile);
const record = {
    plotly_js: plotlyVersion,
    traces: TRACES,
    file: 'static/vendor/plotly/plotly.min.js',
    bytes: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
};
writeFileSync(join(here, 'bundle.json'), JSON.stringify(record, null, 2) + '\n');
console.log(`${record.file}: ${record.bytes} bytes, sha256 ${record.sha256}`);
