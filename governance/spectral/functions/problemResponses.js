// charter-problem-json-errors: every 4xx, 5xx and default response is RFC 9457
// problem details. Core rules cannot express "for each error status, this media type with a
// Problem-shaped schema", so this small function does (resolved document).
const ERROR = /^([45](\d\d|XX)|default)$/;
const MEDIA = 'application/problem+json';

function problemShaped(schema) {
  if (!schema || typeof schema !== 'object') return false;
  if (Array.isArray(schema.allOf) && schema.allOf.some(problemShaped)) return true;
  const props = schema.properties || {};
  return props.title !== undefined && props.status !== undefined && props.type !== undefined;
}

export default function problemResponses(responses, _options, context) {
  if (responses === null || typeof responses !== 'object') return [];
  const results = [];
  for (const [status, response] of Object.entries(responses)) {
    if (!ERROR.test(status) || !response || typeof response !== 'object') continue;
    const content = response.content || {};
    const media = content[MEDIA];
    if (!media) {
      results.push({ message: `Response ${status} is not \`${MEDIA}\`.`, path: [...context.path, status] });
      continue;
    }
    const others = Object.keys(content).filter((type) => type !== MEDIA);
    if (others.length > 0) {
      results.push({ message: `Response ${status} also offers ${others.join(', ')}; errors are \`${MEDIA}\` only.`, path: [...context.path, status, 'content'] });
    }
    if (!problemShaped(media.schema)) {
      results.push({ message: `Response ${status} schema is not the shared Problem schema.`, path: [...context.path, status, 'content', MEDIA] });
    }
  }
  return results;
}
