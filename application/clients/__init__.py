"""The apps that may send people here to sign in (the OpenID Provider's clients): registering,
changing and removing them, their secrets, and checking a client's secret."""
