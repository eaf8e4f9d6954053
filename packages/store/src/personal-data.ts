/**
 * Personal data in payloads, and forgetting it (crypto-shredding). An event type declares which fields of its
 * payload are personal to which subject; the store encrypts each of them with the subject's key (AES-256-GCM, from
 * Node's crypto) before the payload reaches SQL, and decrypts them on load. The keys live in `subject_keys`;
 * `forget_subject` (SQL, the owner's) deletes a subject's keys, after which those fields read as `forgotten`,
 * everywhere, while the events themselves stay as they are.
 *
 * In the stored payload a personal field is an envelope, `{"$fstore": "encrypted", "key", "iv", "data"}`; once its
 * key is gone it reads as the placeholder `{"$fstore": "forgotten"}`.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { type Database, queryRows } from './database.js';
import { UnknownSubjectKeyError, ValidationError } from './errors.js';

/** What a personal field holds once its subject was forgotten. */
export interface Forgotten {
  readonly $fstore: 'forgotten';
}

/** The placeholder itself: a plain JSON value, so that read models may store it as it is. */
export const forgotten: Forgotten = Object.freeze({ $fstore: 'forgotten' });

export function isForgotten(value: unknown): value is Forgotten {
  return (
    typeof value === 'object' && value !== null && (value as { $fstore?: unknown }).$fstore === 'forgotten'
  );
}

/** A payload whose fields `K` are personal: each may read as `Forgotten`. */
export type Forgettable<TData, K extends keyof TData> = Omit<TData, K> & { [P in K]: TData[P] | Forgotten };

/** Which fields of a payload are personal, and to whom. */
export interface PersonalFields<TData = unknown, K extends string = string> {
  /** The subject the data is about: a customer id in the payload, or the stream (`(_, deciderId) => deciderId`). */
  subject: (data: TData, deciderId: string) => string;
  fields: readonly K[];
}

interface Envelope {
  $fstore: 'encrypted';
  key: string;
  iv: string;
  data: string;
}

function isEnvelope(value: unknown): value is Envelope {
  return (
    typeof value === 'object' && value !== null && (value as { $fstore?: unknown }).$fstore === 'encrypted'
  );
}

const algorithm = 'aes-256-gcm';

/**
 * The payload with its personal fields encrypted under the subject's current key (`subject_key`: one round trip,
 * only for event types that declare personal fields). A field that holds the placeholder is refused.
 */
export async function encryptPersonalFields(
  db: Database,
  personal: PersonalFields,
  data: unknown,
  deciderId: string,
  path: string,
  /** The keys already drawn by this append, by subject: its events about one subject ask SQL once. */
  drawn: Map<string, Promise<{ keyId: string; key: Buffer }>>,
): Promise<unknown> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return data;
  const subject = personal.subject(data, deciderId);
  if (typeof subject !== 'string' || subject.length === 0)
    throw new ValidationError([
      { path, message: 'the subject of its personal data must be a non-empty string' },
    ]);
  const present = personal.fields.filter((field) => Object.hasOwn(data, field));
  for (const field of present) {
    if (isForgotten((data as Record<string, unknown>)[field]))
      throw new ValidationError([
        {
          path: `${path}.data.${field}`,
          message: 'is the forgotten placeholder: it cannot be written again',
        },
      ]);
  }
  if (present.length === 0) return data;
  if (!drawn.has(subject)) drawn.set(subject, drawSubjectKey(db, subject));
  const { keyId, key } = await (drawn.get(subject) as Promise<{ keyId: string; key: Buffer }>);
  const encrypted: Record<string, unknown> = { ...data };
  for (const field of present) {
    const iv = randomBytes(12);
    const cipher = createCipheriv(algorithm, key, iv);
    // The field's name is authenticated with it: a ciphertext moved to another field does not decrypt.
    cipher.setAAD(Buffer.from(field, 'utf8'));
    const plaintext = Buffer.from(JSON.stringify(encrypted[field]), 'utf8');
    const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    const envelope: Envelope = {
      $fstore: 'encrypted',
      key: keyId,
      iv: iv.toString('base64'),
      data: sealed.toString('base64'),
    };
    encrypted[field] = envelope;
  }
  return encrypted;
}

/** The key to encrypt a subject's data with now (`subject_key`: its newest, or the one drawn here). */
async function drawSubjectKey(db: Database, subject: string): Promise<{ keyId: string; key: Buffer }> {
  const [row] = await queryRows(
    db,
    sql`SELECT key_id, key FROM subject_key(${subject}::text, ${randomUUID()}::uuid, ${randomBytes(32)}::bytea)`,
  );
  if (!row) throw new Error(`subject_key returned no key for subject ${subject}: run the append again`);
  return { keyId: String(row.key_id), key: asBuffer(row.key) };
}

/** Keys by id: the key, or null when its subject was forgotten. */
export type SubjectKeys = ReadonlyMap<string, Buffer | null>;

const noKeys: SubjectKeys = new Map();

/**
 * The keys that the payloads of `rows` were encrypted with (`subject_keys`: one round trip, and none when no payload
 * holds personal data).
 */
export function subjectKeysFor(
  db: Database,
  payloads: readonly unknown[],
): Promise<SubjectKeys> | SubjectKeys {
  // Synchronous and allocation-free when there is nothing to fetch: the common case, per event in a worker.
  if (!payloads.some(hasEnvelope)) return noKeys;
  const ids = new Set<string>();
  for (const data of payloads) for (const envelope of envelopesIn(data)) ids.add(envelope.key);
  return fetchKeys(db, ids);
}

async function fetchKeys(db: Database, ids: ReadonlySet<string>): Promise<SubjectKeys> {
  // As an array literal in text: drizzle spreads a JavaScript array into one parameter per item (ids are UUIDs).
  const literal = `{${[...ids].join(',')}}`;
  const rows = await queryRows(db, sql`SELECT * FROM subject_keys(${literal}::text::uuid[])`);
  return new Map(rows.map((row) => [String(row.key_id), row.forgotten === true ? null : asBuffer(row.key)]));
}

/**
 * The payload with its personal fields decrypted, or the placeholder where the subject was forgotten; whether any
 * was. Throws UnknownSubjectKeyError for a key that is neither there nor forgotten.
 */
export function openPersonalFields(
  eventId: string,
  data: unknown,
  keys: SubjectKeys,
): { data: unknown; forgotten: boolean } {
  if (!hasEnvelope(data)) return { data, forgotten: false };
  const opened: Record<string, unknown> = { ...(data as Record<string, unknown>) };
  let anyForgotten = false;
  for (const [field, value] of Object.entries(opened)) {
    if (!isEnvelope(value)) continue;
    const key = keys.get(value.key);
    if (key === undefined) throw new UnknownSubjectKeyError(eventId, field, value.key);
    if (key === null) {
      opened[field] = forgotten;
      anyForgotten = true;
      continue;
    }
    const sealed = Buffer.from(value.data, 'base64');
    const decipher = createDecipheriv(algorithm, key, Buffer.from(value.iv, 'base64'));
    decipher.setAAD(Buffer.from(field, 'utf8'));
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const plaintext = Buffer.concat([
      decipher.update(sealed.subarray(0, sealed.length - 16)),
      decipher.final(),
    ]);
    opened[field] = JSON.parse(plaintext.toString('utf8'));
  }
  return { data: opened, forgotten: anyForgotten };
}

function hasEnvelope(data: unknown): boolean {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return false;
  for (const key in data) if (isEnvelope((data as Record<string, unknown>)[key])) return true;
  return false;
}

function envelopesIn(data: unknown): Envelope[] {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return [];
  return Object.values(data).filter(isEnvelope);
}

/** bytea as the drivers give it: a Buffer (postgres.js), a Uint8Array (PGlite), or `\x…` text. */
function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'string' && value.startsWith('\\x')) return Buffer.from(value.slice(2), 'hex');
  throw new TypeError(`a subject key should be bytes, got ${typeof value}`);
}
