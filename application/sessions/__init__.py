"""A session's life once a sign-in has verified someone: started, refreshed, listed, ended; and
whether an access token still speaks for its session."""
