"""The genre worker: movies.new -> poster -> genres -> movies.genres."""
