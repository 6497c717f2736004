-- Plugin versions live in the database so that every host process runs the same ones. The
-- active version of a plugin is its latest activation; rolling back activates the previous one.
CREATE TABLE plugin_versions (
    id uuid PRIMARY KEY,
    plugin_name text NOT NULL,
    content_sha256 text NOT NULL,
    component bytea NOT NULL,
    manifest jsonb NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (plugin_name, content_sha256)
);

CREATE TABLE plugin_activations (
    id bigserial PRIMARY KEY,
    plugin_name text NOT NULL,
    version_id uuid NOT NULL REFERENCES plugin_versions (id),
    activated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plugin_activations_latest ON plugin_activations (plugin_name, id DESC);
