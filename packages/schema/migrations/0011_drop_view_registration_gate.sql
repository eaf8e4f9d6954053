-- The gate ordered view registrations against appends; since 0010 appends no longer read views at all.
DROP TABLE "view_registration_gate" CASCADE;