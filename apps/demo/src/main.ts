// The demo (a decider and projection workers on an embedded PostgreSQL) arrives with the demo issue.
export {};
