// Parses and validates an AsyncAPI document with the reference parser
// (@asyncapi/parser, with its JSON Schema draft-07 format parser) and
// checks that every message has a payload schema.
// Usage: node validate.mjs FILE   — exit 0 when valid, 1 with diagnostics otherwise.
import { readFileSync } from 'node:fs';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const file = process.argv[2];
if (!file) {
  console.error('usage: node validate.mjs FILE');
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'));
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
for (const d of diagnostics) {
  const level = d.severity === DiagnosticSeverity.Error ? 'error' : 'note';
  console.error(`${level}: ${d.code} ${d.message} at ${JSON.stringify(d.path)}`);
}
if (!document || errors.length > 0) {
  console.error(`invalid: ${errors.length} error(s)`);
  process.exit(1);
}
const messages = document.allMessages().all();
let missing = 0;
for (const m of messages) {
  if (!m.hasPayload()) {
    console.error(`message ${m.id()} has no payload`);
    missing += 1;
  }
}
if (missing > 0) process.exit(1);
console.log(JSON.stringify({
  version: document.version(),
  channels: document.allChannels().all().map((c) => c.address()),
  messages: messages.length,
}));
