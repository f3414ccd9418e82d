-- InvokeBatch takes a dedupe key per item (InvokeBatchRequest.dedupe_keys), so a batch's
-- answer says per item whether it created its execution. A retried call (same request_id)
-- must answer the same: the record keeps the per-item flags. NULL (every record from before,
-- and calls without keys): every item's flag is `created`.
ALTER TABLE conductor_invoke_requests ADD COLUMN created_items boolean[];
