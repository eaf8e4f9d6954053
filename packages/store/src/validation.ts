/**
 * Checks on input that run before any SQL: ids and names of sane length, UUIDs that are UUIDs, and payloads that
 * survive JSON unchanged (JSON.stringify would silently drop undefined, turn NaN into null, or throw on BigInt and
 * cycles: an event store must not store something other than what it was given).
 */
import { ValidationError, type ValidationIssue } from './errors.js';

export const limits = {
  /** Stream ids (`decider_id`). */
  maxDeciderIdLength: 512,
  /** Decider and event type names. */
  maxNameLength: 256,
} as const;

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A lone surrogate is not Unicode: UTF-8 encoders replace it with U+FFFD (two ids would become one), and
// PostgreSQL refuses it in JSON.
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && uuidPattern.test(value);
}

export class Issues {
  readonly list: ValidationIssue[] = [];
  add(path: string, message: string) {
    this.list.push({ path, message });
  }
  uuid(path: string, value: unknown) {
    if (!isUuid(value)) this.add(path, `must be a UUID, got ${describe(value)}`);
  }
  text(path: string, value: unknown, maxLength: number) {
    if (typeof value !== 'string') this.add(path, `must be a string, got ${describe(value)}`);
    else if (value.length === 0) this.add(path, 'must not be empty');
    else if (value.length > maxLength)
      this.add(path, `must be at most ${maxLength} characters, got ${value.length}`);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what PostgreSQL text cannot hold.
    else if (/\u0000/.test(value)) this.add(path, 'must not contain NUL characters');
    else if (loneSurrogate.test(value))
      this.add(path, 'must be well-formed Unicode (it holds a lone surrogate)');
  }
  /** A whole number in [min, max]. */
  whole(path: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      this.add(path, `must be a whole number from ${min} to ${max}, got ${describe(value)}`);
    }
  }
  throwIfAny() {
    if (this.list.length > 0) throw new ValidationError(this.list);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null) return 'null';
  if (typeof value === 'number') return String(value);
  return typeof value;
}

/**
 * Serialises a payload to JSON, refusing what JSON cannot hold as it is: undefined, functions, symbols, BigInt,
 * non-finite numbers, cycles, NUL characters (PostgreSQL's jsonb refuses them), and objects that are not plain
 * (Date, Map, class instances: they would come back as something else).
 */
export function toJson(value: unknown, path: string, issues: Issues): string | undefined {
  const before = issues.list.length;
  const seen = new Set<object>();
  const walk = (current: unknown, at: string): void => {
    switch (typeof current) {
      case 'string':
        // biome-ignore lint/suspicious/noControlCharactersInRegex: jsonb cannot store \u0000.
        if (/\u0000/.test(current))
          issues.add(at, 'strings must not contain NUL (\\u0000): jsonb cannot store it');
        else if (loneSurrogate.test(current))
          issues.add(at, 'must be well-formed Unicode (it holds a lone surrogate)');
        return;
      case 'boolean':
        return;
      case 'number':
        if (!Number.isFinite(current)) issues.add(at, `${current} is not a JSON number`);
        return;
      case 'object': {
        if (current === null) return;
        if (seen.has(current)) {
          issues.add(at, 'is a cycle: the value contains itself');
          return;
        }
        seen.add(current);
        if (Array.isArray(current)) {
          for (const [index, item] of current.entries()) walk(item, `${at}.${index}`);
        } else {
          const prototype = Object.getPrototypeOf(current);
          if (prototype !== Object.prototype && prototype !== null) {
            const kind = (current as object).constructor?.name ?? 'object';
            issues.add(at, `is a ${kind}, not plain JSON: convert it (a Date to an ISO string, for example)`);
          } else {
            for (const [key, item] of Object.entries(current)) walk(item, `${at}.${key}`);
          }
        }
        seen.delete(current);
        return;
      }
      default:
        issues.add(at, `${typeof current} is not JSON`);
    }
  };
  walk(value, path);
  return issues.list.length === before ? JSON.stringify(value) : undefined;
}
