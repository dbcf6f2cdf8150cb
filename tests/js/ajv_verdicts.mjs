// Ajv2020 + ajv-formats verdicts on the library's corpus, and a strict compile of every schema.
// stdin: {"vocabulary": <vocabulary.schema.json>, "schemas": {key: schema}, "cases": [[key, data], ...]}
// stdout: {"strict": {key: null | "compile error"}, "verdicts": [true|false, ...]}
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { vocabulary, schemas, cases } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

function withVocabulary(ajv) {
  addFormats(ajv);
  ajv.addFormat("password", true); // an annotation: hides the text, never refuses it
  for (const [keyword, metaSchema] of Object.entries(vocabulary.properties)) {
    ajv.addKeyword({ keyword, metaSchema });
  }
  return ajv;
}

// Strict: every schema must compile with strict mode on (union types are how nullable inputs read).
const strictAjv = withVocabulary(new Ajv2020({ strict: true, allowUnionTypes: true }));
const strict = {};
for (const [key, schema] of Object.entries(schemas)) {
  try {
    strictAjv.compile(schema);
    strict[key] = null;
  } catch (error) {
    strict[key] = String(error.message || error);
  }
}

// Verdicts: the validator a form uses (all errors, formats checked).
const ajv = withVocabulary(new Ajv2020({ strict: false, allErrors: true }));
const compiled = {};
const verdicts = cases.map(([key, data]) => {
  compiled[key] ??= ajv.compile(schemas[key]);
  return compiled[key](data);
});
process.stdout.write(JSON.stringify({ strict, verdicts }));
