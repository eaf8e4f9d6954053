CREATE TABLE "view_registration_gate" (
	"id" smallint PRIMARY KEY DEFAULT 1 NOT NULL,
	"generation" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "view_registration_gate_one_row" CHECK ("view_registration_gate"."id" = 1)
);
