if not (true, false) { discard; }
