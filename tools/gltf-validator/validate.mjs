// Validate glTF/glb files with Khronos' glTF-Validator: `node validate.mjs FILE...`.
// Prints one JSON object on stdout: {"<file>": {"errors": n, "warnings": n, "messages": [...]}, ...};
// exit status 1 when any file has an error.
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const out = {};
let failed = false;
for (const path of process.argv.slice(2)) {
  const data = new Uint8Array(await readFile(path));
  const report = await validator.validateBytes(data, { maxIssues: 50, writeTimestamp: false, uri: path });
  const issues = report.issues;
  out[path] = {
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    messages: issues.messages.map((m) => ({ code: m.code, severity: m.severity, pointer: m.pointer, message: m.message })),
  };
  if (issues.numErrors > 0) failed = true;
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(failed ? 1 : 0);
