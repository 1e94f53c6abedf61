"""Local stand-ins for the demo and the tests: an embedded broker, a TMDB-shaped server,
synthetic posters."""
