if size :over 5K { discard; }
