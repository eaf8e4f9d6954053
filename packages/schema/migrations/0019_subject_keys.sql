CREATE TABLE "subject_erasures" (
	"subject" text NOT NULL,
	"key_ids" uuid[] NOT NULL,
	"forgotten_by" text NOT NULL,
	"forgotten_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "subject_keys" (
	"key_id" uuid PRIMARY KEY NOT NULL,
	"subject" text NOT NULL,
	"key" "bytea" NOT NULL,
	"first" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "subject_keys_key_check" CHECK (octet_length("subject_keys"."key") = 32)
);
--> statement-breakpoint
CREATE INDEX "subject_erasures_subject_idx" ON "subject_erasures" USING btree ("subject");--> statement-breakpoint
CREATE UNIQUE INDEX "subject_keys_first_key" ON "subject_keys" USING btree ("subject") WHERE "subject_keys"."first";--> statement-breakpoint
CREATE INDEX "subject_keys_subject_idx" ON "subject_keys" USING btree ("subject","created_at");