/**
 * A TCP proxy between a projection worker and PostgreSQL that loses the answer to a committed acknowledgement:
 * once armed, the next transaction that called ack_events (one stream) or ack_leases (several streams) and then
 * commits has its COMMIT carried out by the server, but the server's answer ("COMMIT" CommandComplete) never
 * reaches the worker; the proxy cuts both sides instead of forwarding it (and, if asked, calls back first, so that
 * the test can SIGKILL the worker process at that very moment). The worker is left not knowing whether its batch
 * committed; it did.
 *
 * It reads the wire protocol just enough for that: the client's Parse messages (statement name and text) and
 * Bind messages (the acknowledgement's parameters, sent as text by postgres.js), the server's CommandComplete tags. The
 * test harness's cutting proxy (tooling/test-harness/src/cutting-proxy.ts) cuts after any implicit commit; this one
 * waits for the explicit COMMIT of a worker's batch transaction.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** The acknowledgement whose commit the proxy cut: ack_events or ack_leases, each stream acknowledged to an offset. */
export interface CutAcknowledgement {
  function: 'ack_events' | 'ack_leases';
  view: string;
  streams: { deciderId: string; leaseId: string; offset: number }[];
  at: number;
}

export interface CommitCuttingProxy {
  /** Connect through this URL. */
  readonly url: string;
  /**
   * Arms the proxy: the next acknowledging transaction's COMMIT is carried out and its answer lost. `beforeCut`
   * runs at that moment, before the sockets are destroyed. Resolves with the acknowledgement that was cut.
   */
  cutNextAckCommit(options?: { beforeCut?: (ack: CutAcknowledgement) => void }): Promise<CutAcknowledgement>;
  /** Every acknowledgement cut so far. */
  readonly cuts: readonly CutAcknowledgement[];
  close(): Promise<void>;
}

/** Splits a byte stream into protocol messages; `typed` false for the client's first (startup) message. */
class MessageReader {
  private buffer: Buffer = Buffer.alloc(0);
  constructor(private typed: boolean) {}

  /** Returns the complete messages received so far, each as [type ('' for startup), body, raw bytes]. */
  push(chunk: Buffer): { type: string; body: Buffer; raw: Buffer }[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const messages: { type: string; body: Buffer; raw: Buffer }[] = [];
    for (;;) {
      const header = this.typed ? 5 : 4;
      if (this.buffer.length < header) break;
      const length = this.buffer.readInt32BE(this.typed ? 1 : 0);
      const total = (this.typed ? 1 : 0) + length;
      if (this.buffer.length < total) break;
      const raw = this.buffer.subarray(0, total);
      messages.push({
        type: this.typed ? String.fromCharCode(raw[0] as number) : '',
        body: raw.subarray(header),
        raw,
      });
      this.buffer = this.buffer.subarray(total);
      // The startup message (or an SSLRequest answered 'N', which postgres.js does not send without ssl) is the
      // only untyped one.
      this.typed = true;
    }
    return messages;
  }
}

function cString(buffer: Buffer, at: number): [string, number] {
  const end = buffer.indexOf(0, at);
  return [buffer.toString('utf8', at, end), end + 1];
}

/** The text parameters of a Bind message, and the statement it binds. */
function parseBind(body: Buffer): { statement: string; parameters: (string | null)[] } {
  let at = 0;
  [, at] = cString(body, at); // portal
  const [statement, next] = cString(body, at);
  at = next;
  const formats = body.readInt16BE(at);
  at += 2 + formats * 2;
  const count = body.readInt16BE(at);
  at += 2;
  const parameters: (string | null)[] = [];
  for (let index = 0; index < count; index++) {
    const length = body.readInt32BE(at);
    at += 4;
    if (length < 0) {
      parameters.push(null);
    } else {
      parameters.push(body.toString('utf8', at, at + length));
      at += length;
    }
  }
  return { statement, parameters };
}

/** The elements of a one-dimensional array literal as functions.ts writes them: `{"a","b"}`, `{1,2}`. */
function arrayElements(literal: string | null): string[] {
  const inner = (literal ?? '{}').slice(1, -1);
  return (inner.match(/"(?:[^"\\]|\\.)*"|[^,]+/g) ?? []).map((element) =>
    element.startsWith('"') ? (JSON.parse(element) as string) : element,
  );
}

/** What an acknowledgement's Bind parameters say, by the function its statement calls; undefined for other statements. */
function acknowledgement(
  statement: string,
  parameters: (string | null)[],
): Omit<CutAcknowledgement, 'at'> | undefined {
  if (/\back_events\s*\(/.test(statement)) {
    const [view, deciderId, leaseId, offset] = parameters;
    return {
      function: 'ack_events',
      view: view ?? '',
      streams: [{ deciderId: deciderId ?? '', leaseId: leaseId ?? '', offset: Number(offset) }],
    };
  }
  if (/\back_leases\s*\(/.test(statement)) {
    const [view, first, leaseIds, offsets] = parameters;
    // ack_leases(view, jsonb [{decider_id, lease_id, offset}]), or the earlier (view, text[], uuid[], bigint[]).
    if (first?.trimStart().startsWith('[')) {
      const acks = JSON.parse(first) as { decider_id: string; lease_id: string; offset: number | string }[];
      return {
        function: 'ack_leases',
        view: view ?? '',
        streams: acks.map((ack) => ({
          deciderId: ack.decider_id,
          leaseId: ack.lease_id,
          offset: Number(ack.offset),
        })),
      };
    }
    const leases = arrayElements(leaseIds ?? null);
    const ends = arrayElements(offsets ?? null);
    return {
      function: 'ack_leases',
      view: view ?? '',
      streams: arrayElements(first ?? null).map((deciderId, index) => ({
        deciderId,
        leaseId: leases[index] ?? '',
        offset: Number(ends[index]),
      })),
    };
  }
  return undefined;
}

export async function startCommitCuttingProxy(databaseUrl: string): Promise<CommitCuttingProxy> {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  const cuts: CutAcknowledgement[] = [];
  let armed:
    | { resolve: (ack: CutAcknowledgement) => void; beforeCut?: (ack: CutAcknowledgement) => void }
    | undefined;

  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    sockets.add(client).add(upstream);
    const statements = new Map<string, string>();
    let pendingAck: Omit<CutAcknowledgement, 'at'> | undefined;
    let cut = false;
    const fromClient = new MessageReader(false);
    const fromServer = new MessageReader(true);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };

    client.on('data', (chunk: Buffer) => {
      if (cut) return;
      for (const message of fromClient.push(chunk)) {
        if (message.type === 'P') {
          const [name, at] = cString(message.body, 0);
          const [text] = cString(message.body, at);
          statements.set(name, text);
        } else if (message.type === 'B') {
          const bind = parseBind(message.body);
          pendingAck = acknowledgement(statements.get(bind.statement) ?? '', bind.parameters) ?? pendingAck;
        }
      }
      upstream.write(chunk);
    });

    upstream.on('data', (chunk: Buffer) => {
      if (cut) return;
      const forward: Buffer[] = [];
      for (const message of fromServer.push(chunk)) {
        if (message.type === 'C') {
          const [tag] = cString(message.body, 0);
          if (tag === 'COMMIT' && pendingAck && armed) {
            const ack = { ...pendingAck, at: Date.now() };
            const { resolve, beforeCut } = armed;
            armed = undefined;
            cut = true;
            cuts.push(ack);
            // What came before the CommandComplete goes through; the answer to the COMMIT does not.
            if (forward.length > 0) client.write(Buffer.concat(forward));
            beforeCut?.(ack);
            closeBoth();
            resolve(ack);
            return;
          }
          if (tag === 'COMMIT' || tag === 'ROLLBACK') pendingAck = undefined;
        }
        forward.push(message.raw);
      }
      if (forward.length > 0) client.write(Buffer.concat(forward));
    });
    client.on('close', closeBoth).on('error', closeBoth);
    upstream.on('close', closeBoth).on('error', closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(typeof address === 'object' && address ? address.port : 0);
  return {
    url: url.toString(),
    cuts,
    cutNextAckCommit(options = {}) {
      if (armed) throw new Error('the proxy is already armed');
      return new Promise((resolve) => {
        armed = { resolve, ...(options.beforeCut ? { beforeCut: options.beforeCut } : {}) };
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
