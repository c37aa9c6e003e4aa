//! A pure replay of the engine over a stored history.
