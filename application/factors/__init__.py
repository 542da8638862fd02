"""Each way of proving who one is (a password, a second factor, recovery codes, passkeys, another
identity provider), proving it again before a sensitive change, and the rate limits on guessing."""
