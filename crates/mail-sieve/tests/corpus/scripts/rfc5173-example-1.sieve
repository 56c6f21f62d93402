require "body";
if body :raw :contains "MAKE MONEY FAST" { discard; }
