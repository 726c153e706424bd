-- soutui schema version 2: forget_user and per-user reads find a user's rows by index instead of
-- scanning every event of the dataset. Additive: no row is rewritten.

CREATE INDEX soutui_events_user ON soutui_events (dataset, user_id);
CREATE INDEX soutui_users_user ON soutui_users (dataset, user_id);
CREATE INDEX soutui_pending_forget_dataset ON soutui_pending_forget (dataset, requested_at);
