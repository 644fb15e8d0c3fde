// dist/cjs holds CommonJS while the package is "type": "module": mark the folder.
import fs from "node:fs";

fs.writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), '{\n  "type": "commonjs"\n}\n');
