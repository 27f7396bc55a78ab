// charter-problem-schema-shared: a problem+json body written in a spec refers to the one
// shared Problem schema (openapi/common/problem.yaml), directly or as the base of an allOf,
// possibly through the spec's own named schemas (`#/components/schemas/MyProblem` that is
// `allOf: [shared Problem, {extension members}]`), so every API answers errors the same way.
// Runs on the unresolved document, where `$ref`s are still visible.
const SHARED = /(^|\/)problem\.yaml#\/components\/schemas\/Problem$/;
const LOCAL = /^#\/components\/schemas\/([^/]+)$/;

function refersToShared(schema, document, depth) {
  if (!schema || typeof schema !== 'object' || depth > 8) return false;
  if (typeof schema.$ref === 'string') {
    if (SHARED.test(schema.$ref)) return true;
    const local = LOCAL.exec(schema.$ref);
    const schemas = (document.components && document.components.schemas) || {};
    return local !== null && refersToShared(schemas[decodeURIComponent(local[1])], document, depth + 1);
  }
  return Array.isArray(schema.allOf)
    && schema.allOf.some((part) => part && typeof part.$ref === 'string'
      && refersToShared({ $ref: part.$ref }, document, depth + 1));
}

export default function sharedProblemSchema(schema, _options, context) {
  if (refersToShared(schema, context.document.data || {}, 0)) return [];
  return [{ message: 'problem+json schema must be (or extend with allOf, directly or through a named schema) `../common/problem.yaml#/components/schemas/Problem`.', path: [...context.path] }];
}
