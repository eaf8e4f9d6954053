CREATE SCHEMA "demo";
--> statement-breakpoint
CREATE TABLE "demo"."orders" (
	"id" text PRIMARY KEY NOT NULL,
	"restaurant_id" text NOT NULL,
	"dishes" jsonb NOT NULL,
	"status" text NOT NULL,
	"prepared_by" text
);
--> statement-breakpoint
CREATE TABLE "demo"."projected_events" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"view" text NOT NULL,
	"decider_id" text NOT NULL,
	"offset" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "demo"."restaurants" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"menu" jsonb NOT NULL,
	"orders_placed" integer DEFAULT 0 NOT NULL
);
