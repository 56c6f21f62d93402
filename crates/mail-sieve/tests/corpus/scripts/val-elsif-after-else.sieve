if false { keep; } else { discard; } elsif true { keep; }
