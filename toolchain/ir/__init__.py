"""The deployed head + exit as one named intermediate representation, consumed by every backend."""
