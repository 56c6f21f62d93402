require "variables";
set "global.x" "y";
