import { createTestDatabase } from '@fstore/test-harness';
import { afterAll } from 'vitest';
import { describeSqlApi } from './test-support/sql-api.suite.js';
import { postgresJsClient } from './test-support/sql-client.js';

const db = await createTestDatabase();
afterAll(() => db.drop());

describeSqlApi('PostgreSQL via postgres.js', async () => postgresJsClient(db.sql));
