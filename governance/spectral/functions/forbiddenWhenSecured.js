// charter-operation-403: an operation that requires a token also answers 403.
// OWASP's ruleset asks for 401 but not for 403; a valid token without the needed scope (or
// acting on someone else's resource) gets 403, so the response must be in the contract.
export default function forbiddenWhenSecured(operation, _options, context) {
  if (operation === null || typeof operation !== 'object') return [];
  const root = context.document.data || {};
  const security = operation.security !== undefined ? operation.security : root.security;
  const secured = Array.isArray(security)
    && security.some((req) => req && Object.keys(req).length > 0);
  const responses = operation.responses || {};
  if (secured && responses['403'] === undefined) {
    return [{ message: 'Secured operation does not declare a 403 response.', path: [...context.path, 'responses'] }];
  }
  return [];
}
