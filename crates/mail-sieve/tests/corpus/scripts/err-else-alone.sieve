else { keep; }
