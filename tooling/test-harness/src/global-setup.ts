/**
 * Vitest global setup shared by every package: start (or reach) one PostgreSQL for the run, build a template
 * database the package prepares once (usually: run fstore's migrations), and hand both to the test files, which
 * clone the template into a fresh database each (see createTestDatabase). Clones take milliseconds, so test files
 * run in parallel, each alone in its database.
 */
import { randomBytes } from 'node:crypto';
import { EmbeddedPostgresError, withDatabase } from '@fstore/embedded-postgres';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { startTestServer } from './server.js';

export interface TestServerContext {
  adminUrl: string;
  template: string;
  description: string;
}

/** The key under which the global setup provides the TestServerContext to test files (vitest's provide/inject). */
export const testServerKey = 'fstoreTestServer';

export interface GlobalSetupOptions {
  /** Prepares the template database, given its connection string: for example, runs fstore's migrations. */
  prepareTemplate?: (url: string) => Promise<void>;
}

export function createGlobalSetup(options: GlobalSetupOptions = {}) {
  return async function setup(project: TestProject) {
    const server = await startTestServer().catch((error: unknown) => {
      // vitest prints an error's cause with its stack: an EmbeddedPostgresError's one line says all a user needs.
      throw error instanceof EmbeddedPostgresError ? new EmbeddedPostgresError(error.message) : error;
    });
    const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
    const template = `fstore_template_${randomBytes(6).toString('hex')}`;
    try {
      await admin.unsafe(`CREATE DATABASE "${template}"`);
      const templateUrl = withDatabase(server.adminUrl, template);
      await options.prepareTemplate?.(templateUrl);
    } catch (error) {
      await admin.end();
      await server.stop();
      throw error;
    }
    const context: TestServerContext = {
      adminUrl: server.adminUrl,
      template,
      description: server.description,
    };
    project.provide(testServerKey as never, context as never);
    return async () => {
      await admin.unsafe(`DROP DATABASE IF EXISTS "${template}" WITH (FORCE)`).catch(() => {});
      await admin.end();
      await server.stop();
    };
  };
}
