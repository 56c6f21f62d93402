keep :flags "x";
