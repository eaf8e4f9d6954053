export * from './migrate.js';
export * from './tables.js';
