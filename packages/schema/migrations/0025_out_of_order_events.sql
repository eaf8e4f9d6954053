CREATE TABLE "out_of_order_events" (
	"transaction_id" "xid8" NOT NULL,
	"offset" bigint NOT NULL,
	CONSTRAINT "out_of_order_events_pkey" PRIMARY KEY("transaction_id","offset")
);
