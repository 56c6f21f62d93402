require "vacation";
vacation :days 14 :subject "Out of office" "Back on the 1st.";
