if false { discard; } elsif true { keep; } else { discard; }
