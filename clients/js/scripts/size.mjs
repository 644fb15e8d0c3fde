// Reports what each entry point costs an app: bundled with its imports,
// minified, and gzip-compressed (as a bundler and a web server would).
import { build } from "esbuild";
import { gzipSync } from "node:zlib";

const entries = { "@sessiongate/client": "dist/index.js", "@sessiongate/client/sessions-view": "dist/sessions-view.js" };
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
for (const [name, file] of Object.entries(entries)) {
  const result = await build({ entryPoints: [file], bundle: true, minify: true, format: "esm", write: false, target: "es2022" });
  const code = result.outputFiles[0].contents;
  console.log(`${name}: ${kb(code.length)} minified, ${kb(gzipSync(code, { level: 9 }).length)} gzip`);
}
