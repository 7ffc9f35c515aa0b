import { type Document, isPair, isScalar, parse as parseYaml, visit } from 'yaml';

const ENV_REF = /\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${NAME}` in every string value with the environment variable NAME (`${NAME:-x}`:
 * x when NAME is unset or empty; `$${NAME}`: the literal text). A value that is exactly one
 * unquoted `${NAME}` takes the variable's YAML type, so `port: ${PORT}` is a number. An unset
 * variable is a problem at its line.
 */
export function substituteEnv(doc: Document, env: NodeJS.ProcessEnv, fail: (path: string[], offset: number, message: string) => void): void {
  visit(doc, {
    Scalar(key, node, ancestors) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return;
      const text = node.value;
      const path = ancestors.filter(isPair).map((p) => (isScalar(p.key) ? String(p.key.value) : '?'));
      const missing: string[] = [];
      const out = text.replace(ENV_REF, (_m, escaped: string, name: string, fallback: string | undefined) => {
        if (escaped) return `\${${name}${fallback !== undefined ? `:-${fallback}` : ''}}`;
        const value = env[name];
        if (value !== undefined && (value !== '' || fallback === undefined)) return value;
        if (fallback !== undefined) return fallback;
        missing.push(name);
        return '';
      });
      for (const name of missing) fail(path, node.range?.[0] ?? 0, `\${${name}} is not set in the environment`);
      const whole = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/.test(text);
      if (whole && node.type === 'PLAIN' && missing.length === 0) {
        const typed: unknown = parseYaml(out);
        node.value = typed === null || ['number', 'boolean'].includes(typeof typed) ? typed : out;
      } else {
        node.value = out;
      }
    },
  });
}
