import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as c:
    for t, k in (("tessera_accounts", "id"), ("tessera_audit_log", "position"), ("tessera_audit_sessions", "id"), ("tessera_sessions", "id")):
        print(t, c.execute(f"SELECT count(*), md5(string_agg(x::text, '|' ORDER BY {k})) FROM {t} x").fetchone())
