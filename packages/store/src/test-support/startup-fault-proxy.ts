/**
 * A TCP proxy in front of the test PostgreSQL that finds, on each connection, the first statement the client sends
 * once the server is ready (its first ReadyForQuery): postgres.js' internal array-types query when `fetch_types` is
 * on, else the statement that opened the connection. At that moment the test decides: forward it, or drop it (and
 * cut the connection, stop listening, or have the backend terminated).
 */
import { createConnection, createServer, type Socket } from 'node:net';

export interface StartupFaultProxy {
  url: string;
  /** The first statement of each connection, in order: its backend's pid and whether it was the types query. */
  readonly firstStatements: { pid: number; typesQuery: boolean }[];
  close(): Promise<void>;
}

export interface FirstStatement {
  pid: number;
  /** Whether it is postgres.js' internal array-types query. */
  typesQuery: boolean;
  client: Socket;
  upstream: Socket;
  /** Refuse connections from now on, as a stopped server does. */
  stopListening(): void;
}

/** The text of postgres.js' internal array-types query, as it travels in the client's Parse message. */
const arrayTypesQuery = Buffer.from('b.typarray');
/** ReadyForQuery: 'Z', length 5 (the status byte follows). */
const readyForQuery = Buffer.from([0x5a, 0, 0, 0, 5]);
/** BackendKeyData: 'K', length 12, pid, secret key. */
const backendKeyData = Buffer.from([0x4b, 0, 0, 0, 12]);

export async function startStartupFaultProxy(
  databaseUrl: string,
  onFirstStatement: (statement: FirstStatement) => 'forward' | 'drop',
): Promise<StartupFaultProxy> {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  const firstStatements: { pid: number; typesQuery: boolean }[] = [];
  const server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    sockets.add(client).add(upstream);
    let pid = 0;
    let state: 'starting' | 'ready' | 'done' = 'starting';
    upstream.on('data', (chunk: Buffer) => {
      const at = chunk.indexOf(backendKeyData);
      if (at >= 0 && pid === 0) pid = chunk.readInt32BE(at + 5);
      if (state === 'starting' && chunk.includes(readyForQuery)) state = 'ready';
      client.write(chunk);
    });
    client.on('data', (chunk: Buffer) => {
      if (state === 'ready') {
        state = 'done';
        const typesQuery = chunk.includes(arrayTypesQuery);
        firstStatements.push({ pid, typesQuery });
        const decision = onFirstStatement({
          pid,
          typesQuery,
          client,
          upstream,
          stopListening: () => server.close(),
        });
        if (decision === 'drop') return;
      }
      upstream.write(chunk);
    });
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', closeBoth).on('error', closeBoth);
    upstream.on('close', closeBoth).on('error', closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    firstStatements,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
