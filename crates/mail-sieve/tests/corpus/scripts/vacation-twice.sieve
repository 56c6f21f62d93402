require "vacation";
vacation :handle "x" "a";
vacation :handle "y" "b";
