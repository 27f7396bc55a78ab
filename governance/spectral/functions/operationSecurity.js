// charter-operation-security: an operation declares who may call it.
// Spectral's core/OWASP rules only check that *some* security exists; Charter also wants
// scopes on every OAuth2 requirement (least privilege, enforced by Connexion), scopes that
// the scheme really defines, and a written reason when an operation is public.

function schemeScopes(scheme) {
  const scopes = new Set();
  for (const flow of Object.values((scheme && scheme.flows) || {})) {
    for (const name of Object.keys((flow && flow.scopes) || {})) scopes.add(name);
  }
  return scopes;
}

export default function operationSecurity(operation, _options, context) {
  if (operation === null || typeof operation !== 'object') return [];
  const root = context.document.data || {};
  const resolved = (context.documentInventory && context.documentInventory.resolved) || root;
  const schemes = (resolved.components && resolved.components.securitySchemes) || {};
  const declared = operation.security !== undefined;
  const security = declared ? operation.security : root.security;
  const here = declared ? ['security'] : [];
  if (!Array.isArray(security)) {
    return [{ message: 'Operation declares no security: add `security` with scopes, or `security: []` with `x-security-justification`.', path: [...context.path, ...here] }];
  }
  const justified = typeof operation['x-security-justification'] === 'string'
    && operation['x-security-justification'].trim().length > 0;
  const results = [];
  if (security.length === 0 && !justified) {
    results.push({ message: 'Public operation (`security: []`) without `x-security-justification`.', path: [...context.path, ...here] });
  }
  security.forEach((requirement, index) => {
    const names = Object.keys(requirement || {});
    if (names.length === 0 && !justified) {
      results.push({ message: 'Anonymous alternative (`{}`) in `security` without `x-security-justification`.', path: [...context.path, 'security', index] });
    }
    for (const name of names) {
      const scheme = schemes[name];
      if (!scheme) { // (oas3-operation-security-defined, which would say so, is off)
        results.push({ message: `Security scheme \`${name}\` is not defined in components.securitySchemes.`, path: [...context.path, 'security', index, name] });
        continue;
      }
      if (scheme.type !== 'oauth2' && scheme.type !== 'openIdConnect') continue;
      const scopes = requirement[name] || [];
      if (scopes.length === 0) {
        results.push({ message: `Security requirement \`${name}\` names no scope.`, path: [...context.path, 'security', index, name] });
      }
      if (scheme.type === 'oauth2') {
        const known = schemeScopes(scheme);
        scopes.forEach((scope, i) => {
          if (!known.has(scope)) {
            results.push({ message: `Scope \`${scope}\` is not defined by security scheme \`${name}\`.`, path: [...context.path, 'security', index, name, i] });
          }
        });
      }
    }
  });
  return results;
}

