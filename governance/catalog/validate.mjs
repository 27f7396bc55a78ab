// Validate Backstage entities with Backstage's own validators (@backstage/catalog-model,
// pinned in package.json): the catalog backend's default entity policies, then the
// built-in kind validators, after resolving `$text` placeholders the way the catalog's
// PlaceholderProcessor does (a file relative to the entity's own file).
//
// Input (stdin): JSON [{"file": "<path relative to cwd>", "entity": {...}}, ...]
// Output (stdout): JSON {"checked": N, "errors": ["<file> <kind>:<name>: <message>", ...]}
// Exit status: 0 when every entity is valid, 1 otherwise, 2 on bad input.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import {
  EntityPolicies, DefaultNamespaceEntityPolicy, FieldFormatEntityPolicy,
  NoForeignRootFieldsEntityPolicy, SchemaValidEntityPolicy,
  apiEntityV1alpha1Validator, componentEntityV1alpha1Validator, domainEntityV1alpha1Validator,
  groupEntityV1alpha1Validator, locationEntityV1alpha1Validator,
  resourceEntityV1alpha1Validator, systemEntityV1alpha1Validator, userEntityV1alpha1Validator,
} from '@backstage/catalog-model';

const policy = EntityPolicies.allOf([
  new SchemaValidEntityPolicy(),
  new DefaultNamespaceEntityPolicy(),
  new NoForeignRootFieldsEntityPolicy(),
  new FieldFormatEntityPolicy(),
]);
const kindValidators = [
  apiEntityV1alpha1Validator, componentEntityV1alpha1Validator, domainEntityV1alpha1Validator,
  groupEntityV1alpha1Validator, locationEntityV1alpha1Validator, resourceEntityV1alpha1Validator,
  systemEntityV1alpha1Validator, userEntityV1alpha1Validator,
];

function resolvePlaceholders(value, file) {
  if (Array.isArray(value)) return value.map((v) => resolvePlaceholders(v, file));
  if (value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0].startsWith('$')) {
    if (keys[0] !== '$text') throw new Error(`unsupported placeholder ${keys[0]}`);
    const target = resolve(dirname(file), value.$text);
    if (!existsSync(target)) throw new Error(`$text ${value.$text}: no such file (${target})`);
    return readFileSync(target, 'utf8');
  }
  return Object.fromEntries(keys.map((k) => [k, resolvePlaceholders(value[k], file)]));
}

let input;
try {
  input = JSON.parse(readFileSync(0, 'utf8'));
} catch (e) {
  console.error(`validate.mjs: stdin is not JSON: ${e.message}`);
  process.exit(2);
}
const errors = [];
for (const { file, entity } of input) {
  const id = `${file} ${entity?.kind}:${entity?.metadata?.name}`;
  try {
    const resolved = resolvePlaceholders(entity, file);
    const out = await policy.enforce(resolved);
    if (!out) throw new Error('rejected by the entity policies');
    let matched = 0;
    for (const validator of kindValidators) {
      if (await validator.check(out)) matched += 1;
    }
    if (matched !== 1) throw new Error(`matched ${matched} kind validators (expected 1)`);
  } catch (e) {
    errors.push(`${id}: ${e.message}`);
  }
}
console.log(JSON.stringify({ checked: input.length, errors }));
process.exit(errors.length ? 1 : 0);
