-- Settings for loading a fresh synthetic source file (kbi.synth.write_sqlite). The file is built
-- under a temporary name and renamed when complete, so a crash mid-load loses nothing worth a
-- journal; without one, a million rows load in seconds.
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
