if size :over :under 10 { discard; }
