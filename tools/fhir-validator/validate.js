// Validates FHIR R4 resources with FHIR.js (the npm package "fhir"): its structure definitions of R4 give each
// element's type, cardinality and required value sets. Reads a JSON array of resources on stdin and prints,
// per resource, {"valid": bool, "messages": [...]}, as a JSON array on stdout. Errors only fail a resource:
// warnings and information are reported but do not.
"use strict";
const { Fhir } = require("fhir");

const fhir = new Fhir();
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const resources = JSON.parse(input);
  const verdicts = resources.map((resource) => {
    const result = fhir.validate(resource, { errorOnUnexpected: true });
    const errors = result.messages.filter((m) => m.severity === "error");
    return { valid: result.valid && errors.length === 0, messages: result.messages };
  });
  process.stdout.write(JSON.stringify(verdicts));
});
